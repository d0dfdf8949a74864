"""Isolation does not queue behind long commands: a ForceOff (the power-off that isolates a
leaking server) runs on workers of its own while flashes hold every ordinary one."""

from __future__ import annotations

import queue
import time

from factory import wire
from factory.siteagent.agent import COMMAND_WORKERS, Agent, urgent
from factory.siteagent.devices import Device
from factory.siteagent.outbox import Outbox
from factory.wire import CommandKind, CommandParam, DeviceKind, HardwareState
from tests.factory.siteagent.sites import PASSWORD, USERNAME, StaticService, site


def command(n: int, kind: str, serial: str, **params: object) -> wire.ClaimedCommand:
    return wire.ClaimedCommand(
        id=f"c{n}",
        kind=kind,
        ultraserver=None,
        ultraserver_serial=serial,
        params=dict(params),
        result_due_at=None,
    )


def test_only_a_forceoff_reset_is_urgent():
    assert urgent(command(1, CommandKind.RESET, "S", reset_type=wire.ISOLATION_RESET_TYPE))
    assert not urgent(command(2, CommandKind.RESET, "S", reset_type="ForceRestart"))
    assert not urgent(command(3, CommandKind.RESET, "S"))
    assert not urgent(command(4, CommandKind.FLASH_FIRMWARE, "S", version="1"))


def test_a_forceoff_runs_at_once_while_long_commands_hold_every_worker(tmp_path):
    slow = StaticService({wire.REDFISH_ROOT: {"Systems": {"@odata.id": "/x"}}}, delay_s=4.0)
    with site("factory") as server:
        entry = next(d for d in server.listing()["devices"] if d["kind"] == DeviceKind.BMC)
        bmc = Device(entry["kind"], entry["serial"], entry["url"], USERNAME, PASSWORD)
        busy = slow.device(serial="BUSY-1")
        agent = Agent(
            control_plane="http://127.0.0.1:9",
            token="unused",
            devices=[busy, bmc],
            outbox=Outbox(str(tmp_path / "outbox.sqlite3")),
        )
        try:
            for n in range(COMMAND_WORKERS + 2):  # more than the workers: a flash backlog
                agent.dispatch(command(n, CommandKind.QUERY_STATE, busy.serial))
            time.sleep(0.3)
            assert agent.working == COMMAND_WORKERS
            started = time.monotonic()
            agent.dispatch(
                command(
                    99,
                    CommandKind.RESET,
                    bmc.serial,
                    **{CommandParam.RESET_TYPE: wire.ISOLATION_RESET_TYPE},
                )
            )
            outcome = agent.results.get(timeout=3.0)
            took = time.monotonic() - started
            assert outcome["id"] == "c99", outcome  # before any of the long ones
            assert outcome["ok"], outcome["error"]
            assert outcome["result"][HardwareState.POWER_STATE] == "Off"
            assert took < 2.0
            assert agent.working >= COMMAND_WORKERS  # the others still at it
        except queue.Empty as exc:
            raise AssertionError("the ForceOff waited behind the long commands") from exc
        finally:
            agent.shutdown(grace_s=0.5)
            slow.stop()
