"""Task monitors and the TaskService over real HTTP (DSP0266 "Asynchronous operations"): the
202's ``Location`` is a monitor, the monitor answers 202 while running and then the operation's
own response, the Task resource tells how it ended."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from factory import wire
from factory.simulator.__main__ import demo_layout
from factory.simulator.devices import build_site
from factory.simulator.flavours import FLAVOURS
from factory.simulator.server import SiteServer

AUTH = ("admin", "factory-sim")
ROOT = wire.REDFISH_ROOT
FLAVOUR_NAMES = sorted(FLAVOURS)


@contextmanager
def bmc_service(flavour: str, **site_options: float) -> Iterator[tuple[str, object]]:
    """One simulated BMC of ``flavour`` served on a free port; (its URL, the Bmc)."""
    layout = demo_layout(1, 1, "trn3")
    layout["racks"][0]["servers"][0]["flavour"] = flavour
    site = build_site(layout, **site_options)  # type: ignore[arg-type]
    server = SiteServer(site, tick_seconds=0.25).start()
    try:
        bmc = next(iter(site.bmcs.values()))
        url = next(d["url"] for d in server.devices if d["serial"] == bmc.serial)
        yield url, bmc
    finally:
        server.stop()


def poll(url: str, monitor: str, timeout: float = 15.0) -> requests.Response:
    """Follow a task monitor as a client does: wait Retry-After while it answers 202."""
    deadline = time.monotonic() + timeout
    while True:
        answer = requests.get(url + monitor, auth=AUTH, timeout=5)
        if answer.status_code != 202:
            return answer
        assert int(answer.headers["Retry-After"]) >= 1
        assert time.monotonic() < deadline, "the task never finished"
        time.sleep(0.2)


def flash(url: str, version: str) -> requests.Response:
    image = f"https://images.example/{version}{wire.FIRMWARE_IMAGE_SUFFIX}"
    return requests.post(
        url + wire.SIMPLE_UPDATE_PATH, json={"ImageURI": image}, auth=AUTH, timeout=5
    )


def burn_in_target(url: str) -> str:
    """Found as a client finds an OEM action: by its name under ``Actions.Oem``."""
    systems = requests.get(url + f"{ROOT}/Systems", auth=AUTH, timeout=5).json()
    path = systems["Members"][0]["@odata.id"]
    oem = requests.get(url + path, auth=AUTH, timeout=5).json()["Actions"]["Oem"]
    return next(a["target"] for name, a in oem.items() if name.endswith(".BurnIn"))


def message_ids(messages: list[dict]) -> list[str]:
    return [m["MessageId"] for m in messages]


@pytest.mark.parametrize("flavour", FLAVOUR_NAMES)
def test_a_flash_answers_a_task_monitor_then_the_outcome(flavour: str) -> None:
    with bmc_service(flavour, flash_seconds=1.5, flash_failure_rate=0.0) as (url, _bmc):
        accepted = flash(url, "2027.01.1")
        assert accepted.status_code == 202
        task = accepted.json()
        monitor = accepted.headers["Location"]
        # The monitor, at the flavour's own URI, and not the Task resource itself.
        assert monitor == FLAVOURS[flavour].monitor_path(ROOT, task["Id"])
        assert monitor != task["@odata.id"]
        assert task["@odata.id"] == f"{ROOT}/TaskService/Tasks/{task['Id']}"
        assert task["TaskMonitor"] == monitor
        assert task["TaskState"] == "Running"
        assert int(accepted.headers["Retry-After"]) >= 1

        running = requests.get(url + monitor, auth=AUTH, timeout=5)
        assert running.status_code == 202
        assert int(running.headers["Retry-After"]) >= 1

        done = poll(url, monitor)
        assert done.status_code == 200
        ids = message_ids(done.json()["@Message.ExtendedInfo"])
        assert "TaskEvent.1.0.TaskCompletedOK" in ids

        body = requests.get(url + task["@odata.id"], auth=AUTH, timeout=5).json()
        assert (body["TaskState"], body["TaskStatus"], body["PercentComplete"]) == (
            "Completed",
            "OK",
            100,
        )
        assert body["StartTime"] <= body["EndTime"]
        assert message_ids(body["Messages"]) == [
            "TaskEvent.1.0.TaskStarted",
            "TaskEvent.1.0.TaskCompletedOK",
        ]
        systems = requests.get(url + f"{ROOT}/Systems", auth=AUTH, timeout=5).json()
        system = requests.get(url + systems["Members"][0]["@odata.id"], auth=AUTH, timeout=5)
        assert system.json()["BiosVersion"] == "2027.01.1"
        listed = requests.get(url + f"{ROOT}/TaskService/Tasks", auth=AUTH, timeout=5).json()
        assert {"@odata.id": task["@odata.id"]} in listed["Members"]


@pytest.mark.parametrize("flavour", FLAVOUR_NAMES)
def test_a_failing_flash_ends_in_exception_and_its_monitor_says_so(flavour: str) -> None:
    with bmc_service(flavour, flash_seconds=1.0, flash_failure_rate=1.0) as (url, bmc):
        before = bmc.firmware_active  # type: ignore[attr-defined]
        accepted = flash(url, "2027.02.1")
        assert accepted.status_code == 202
        done = poll(url, accepted.headers["Location"])
        # The operation's error response, not a success.
        assert done.status_code == 500
        error = done.json()["error"]
        assert "TaskEvent.1.0.TaskAborted" in message_ids(error["@Message.ExtendedInfo"])

        task = requests.get(url + accepted.json()["@odata.id"], auth=AUTH, timeout=5).json()
        assert (task["TaskState"], task["TaskStatus"]) == ("Exception", "Critical")
        assert any(m["MessageSeverity"] == "Critical" for m in task["Messages"])
        assert "EndTime" in task
        assert bmc.firmware_active == before  # type: ignore[attr-defined]


@pytest.mark.parametrize("flavour", FLAVOUR_NAMES)
def test_burn_in_can_be_cancelled_through_its_monitor_but_a_flash_cannot(flavour: str) -> None:
    with bmc_service(flavour, burn_in_seconds=60.0, flash_seconds=60.0) as (url, _bmc):
        started = requests.post(url + burn_in_target(url), json={}, auth=AUTH, timeout=5)
        assert started.status_code == 202
        monitor = started.headers["Location"]
        cancelled = requests.delete(url + monitor, auth=AUTH, timeout=5)
        assert cancelled.status_code == 204
        task = requests.get(url + started.json()["@odata.id"], auth=AUTH, timeout=5).json()
        assert task["TaskState"] == "Cancelled"
        assert "TaskEvent.1.0.TaskCancelled" in message_ids(task["Messages"])
        assert "Oem" not in task  # a cancelled burn-in has no result
        assert requests.get(url + monitor, auth=AUTH, timeout=5).status_code == 404

        flashing = flash(url, "2027.03.1")
        refused = requests.delete(url + flashing.headers["Location"], auth=AUTH, timeout=5)
        assert refused.status_code == 405
        assert "DELETE" not in refused.headers.get("Allow", "")
        still = requests.get(url + flashing.json()["@odata.id"], auth=AUTH, timeout=5).json()
        assert still["TaskState"] == "Running"


@pytest.mark.parametrize("flavour", FLAVOUR_NAMES)
def test_a_burn_in_result_stays_reachable_in_the_task_oem(flavour: str) -> None:
    with bmc_service(flavour, burn_in_seconds=1.0) as (url, _bmc):
        started = requests.post(url + burn_in_target(url), json={}, auth=AUTH, timeout=5)
        done = poll(url, started.headers["Location"])
        assert done.status_code == 200
        oem = FLAVOURS[flavour].oem
        assert done.json()["Oem"][oem][wire.BurnInResult.TESTED] == 144
        task = requests.get(url + started.json()["@odata.id"], auth=AUTH, timeout=5).json()
        assert task["TaskState"] == "Completed"
        assert task["Oem"][oem][wire.BurnInResult.FAILED_CHIPS] == []


def test_the_task_service_is_linked_from_the_root_and_lists_its_tasks() -> None:
    with bmc_service("factory") as (url, _bmc):
        root = requests.get(url + ROOT, auth=AUTH, timeout=5).json()
        assert root["Tasks"] == {"@odata.id": f"{ROOT}/TaskService"}
        service = requests.get(url + f"{ROOT}/TaskService", auth=AUTH, timeout=5).json()
        assert service["ServiceEnabled"] is True
        assert service["Tasks"] == {"@odata.id": f"{ROOT}/TaskService/Tasks"}
        missing = requests.get(url + f"{ROOT}/TaskService/Tasks/nope", auth=AUTH, timeout=5)
        assert missing.status_code == 404
