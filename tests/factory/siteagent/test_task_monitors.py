"""Long operations followed as DSP0266 §12.2 runs them: 202 and a task monitor at
``Location``, polled honouring ``Retry-After`` until it answers other than 202, then the Task
for the true outcome. Against both simulated flavours (their monitors live at other URIs), and
against older firmware that puts the Task itself at ``Location``."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from factory import wire
from factory.siteagent import commands
from factory.siteagent.devices import Answer, Device
from factory.wire import CommandKind, HardwareState
from tests.factory.siteagent.sites import FLAVOURS, PASSWORD, USERNAME, device, site
from tests.support.signing import any_image


def flash(bmc: Device, version: str) -> tuple[bool, dict, str]:
    return commands.execute(
        bmc,
        CommandKind.FLASH_FIRMWARE,
        {wire.CommandParam.VERSION: version, wire.CommandParam.ORIGIN: "vendor"},
        image_base=any_image(),
        poll_s=0.1,
    )


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_flash_reports_done_only_when_the_device_is_done(flavour):
    with site(flavour, flash_seconds=1.5) as server:
        bmc = device(server)
        before = commands.query_state(bmc)[HardwareState.FIRMWARE_VERSION]
        started = time.monotonic()
        ok, state, error = flash(bmc, "2027.01.1")
        assert (ok, error) == (True, "")
        assert time.monotonic() - started >= 1.0  # it waited for the task, not the 202
        assert state[HardwareState.FIRMWARE_VERSION] == "2027.01.1"
        assert state[HardwareState.INACTIVE_FIRMWARE_VERSION] == before
        bmc.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_flash_that_fails_on_the_device_is_reported_failed(flavour):
    with site(flavour, flash_seconds=1.0, flash_failure_rate=1.0) as server:
        bmc = device(server)
        before = commands.query_state(bmc)[HardwareState.FIRMWARE_VERSION]
        ok, state, error = flash(bmc, "2027.01.1")
        assert ok is False
        assert error  # the device's own words (the Task's Messages or the error response)
        assert state[HardwareState.FIRMWARE_VERSION] == before  # and the state still tells
        bmc.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_burn_in_is_followed_to_its_result(flavour):
    with site(flavour, burn_in_seconds=1.0) as server:
        bmc = device(server)
        ok, result, error = commands.execute(
            bmc, CommandKind.BURN_IN, {}, image_base=any_image(), poll_s=0.1
        )
        assert (ok, error) == (True, "")
        assert result[wire.BurnInResult.TESTED] == 64
        assert result[wire.BurnInResult.FAILED_CHIPS] == []
        bmc.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_patch_sends_if_match_with_the_resources_etag(flavour):
    with site(flavour) as server:
        bmc = device(server)
        path = "/redfish/v1/SessionService"
        current = bmc.get_answer(path)
        assert current.etag, "the simulator gives its resources an ETag"
        stale = requests.patch(
            f"{bmc.url}{path}",
            json={"SessionTimeout": 900},
            headers={"X-Auth-Token": bmc.token or "", "If-Match": '"stale"'},
            timeout=5,
        )
        assert stale.status_code == 412  # the device does check it...
        answer = bmc.patch(path, {"SessionTimeout": 900})  # ...and the agent sends the real one
        assert answer.status in (200, 204)
        assert bmc.get(path)["SessionTimeout"] == 900
        bmc.close()


# --- other firmware, as DSP0266 allows ---------------------------------------------------


class OtherBmc:
    """A device whose long operations run a way the simulator does not: ``style`` "monitor"
    (202 + Retry-After twice, then 204, no Task at all) or "task" (older firmware: the Task at
    Location, 200 with TaskState Running, then Completed)."""

    def __init__(self, style: str, outcome: str = "OK"):
        self.polls: list[float] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def answer(self, status: int, body: dict | None, **headers: str) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                if data:
                    self.send_header("Content-Type", "application/json")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.endswith("/Sessions"):
                    return self.answer(404, {"error": {"message": "no sessions"}})
                where = "/redfish/v1/Monitor/1" if style == "monitor" else "/redfish/v1/Tasks/1"
                self.answer(202, None if style == "monitor" else {}, Location=where)

            def do_GET(self) -> None:
                outer.polls.append(time.monotonic())
                done = len(outer.polls) > 2
                if style == "monitor":
                    if done:
                        return self.answer(204, None)
                    return self.answer(202, None, **{"Retry-After": "1"})
                self.answer(
                    200,
                    {
                        "@odata.id": "/redfish/v1/Tasks/1",
                        "@odata.type": "#Task.v1_7_4.Task",
                        "TaskState": "Completed" if done else "Running",
                        "TaskStatus": outcome if done else "OK",
                        "Messages": [{"Message": "it went " + outcome}] if done else [],
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> Device:
        return Device("bmc", "OTHER-1", self.url, USERNAME, PASSWORD)

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_monitor_that_ends_204_without_a_task_is_success_after_retry_after():
    other = OtherBmc("monitor")
    with other as bmc:
        started = time.monotonic()
        ok, _, error = commands._action(bmc, "/redfish/v1/Actions/Do", {}, poll_s=0.05)
        assert (ok, error) == (True, "")
    assert len(other.polls) == 3
    gaps = [b - a for a, b in zip(other.polls, other.polls[1:], strict=False)]
    assert min(gaps) >= 0.9  # Retry-After: 1 honoured, not the 0.05 s poll
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("outcome", "ok"), [("OK", True), ("Critical", False)])
def test_older_firmware_with_the_task_at_location_still_works(outcome, ok):
    with OtherBmc("task", outcome) as bmc:
        done, _, error = commands._action(bmc, "/redfish/v1/Actions/Do", {}, poll_s=0.05)
    assert done is ok
    assert error.endswith("" if ok else ": it went Critical")


def test_retry_after_reads_seconds_and_dates():
    assert Answer(202, headers={"Retry-After": "3"}).retry_after() == 3.0
    assert Answer(202, headers={}).retry_after() is None
    assert Answer(202, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}).retry_after() == 0
