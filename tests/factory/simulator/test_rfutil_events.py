"""DMTF's own tools against the simulator: ``rf_event_service.py`` subscribes a real listener
that then receives a test event, and ``rf_update.py`` reports a flash done only when its task
is, with the new version then active, and a failing flash as failed."""

from __future__ import annotations

import json
import time

import pytest
import requests

from factory import wire
from tests.support.redfish import PASSWORD, USERNAME, rf_script, simulated_device
from tests.support.webhooks import Receiver

AUTH = (USERNAME, PASSWORD)
ROOT = wire.REDFISH_ROOT


def active_version(base: str) -> str:
    """The firmware the system runs, read back as a client does: the system's BiosVersion."""
    systems = requests.get(base + f"{ROOT}/Systems", auth=AUTH, timeout=5).json()
    system = requests.get(base + systems["Members"][0]["@odata.id"], auth=AUTH, timeout=5)
    return str(system.json()["BiosVersion"])


@pytest.mark.parametrize("flavour", ["factory", "contoso"])
def test_rf_event_service_subscribes_and_the_listener_gets_a_test_event(flavour: str) -> None:
    with Receiver() as listener, simulated_device("bmc", flavour) as base:
        created = rf_script(
            "rf_event_service.py",
            base,
            "subscribe",
            "--destination",
            listener.url(),
            "--context",
            "dmtf-tools",
        )
        assert created.returncode == 0, created.stdout + created.stderr
        location = created.stdout.split("'")[1]
        assert location.startswith(f"{ROOT}/EventService/Subscriptions/")

        sent = requests.post(
            base + f"{ROOT}/EventService/Actions/EventService.SubmitTestEvent",
            json={"MessageId": "ResourceEvent.1.4.ResourceChanged", "EventType": "Other"},
            auth=AUTH,
            timeout=5,
        )
        assert sent.status_code == 204
        deadline = time.monotonic() + 5
        while not listener.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        event = json.loads(listener.requests[0].body)
        assert event["Context"] == "dmtf-tools"
        assert event["Events"][0]["MessageId"] == "ResourceEvent.1.4.ResourceChanged"

        info = rf_script("rf_event_service.py", base, "info")
        assert info.returncode == 0, info.stdout + info.stderr
        assert listener.url() in info.stdout
        sub_id = location.rsplit("/", 1)[-1]
        gone = rf_script("rf_event_service.py", base, "unsubscribe", "--id", sub_id)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        after = rf_script("rf_event_service.py", base, "info")
        assert "No subscriptions" in after.stdout


@pytest.mark.parametrize("flavour", ["factory", "contoso"])
def test_rf_update_reports_done_when_the_task_is_and_the_version_is_then_active(
    flavour: str,
) -> None:
    with simulated_device(
        "bmc", flavour, "--flash-seconds", "2", "--flash-failure-rate", "0"
    ) as base:
        image = f"https://images.example/2027.04.1{wire.FIRMWARE_IMAGE_SUFFIX}"
        began = time.monotonic()
        run = rf_script("rf_update.py", base, "--image", image)
        assert run.returncode == 0, run.stdout + run.stderr
        assert time.monotonic() - began >= 1.5  # it waited for the task
        assert "Task is Done!" in run.stdout
        assert "TaskCompletedOK" in run.stdout
        assert active_version(base) == "2027.04.1"


def test_rf_update_reports_a_failing_flash_as_failed() -> None:
    with simulated_device(
        "bmc", "factory", "--flash-seconds", "1", "--flash-failure-rate", "1"
    ) as base:
        before = active_version(base)
        run = rf_script(
            "rf_update.py",
            base,
            "--image",
            f"https://images.example/2027.05.1{wire.FIRMWARE_IMAGE_SUFFIX}",
        )
        assert "TaskAborted" in run.stdout, run.stdout + run.stderr
        assert "Success" not in run.stdout
        assert active_version(base) == before
