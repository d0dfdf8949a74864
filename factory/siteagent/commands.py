"""Commands from the control plane, carried out on the BMC through Redfish.

Each returns ``(ok, result, error)``; the parameters and result keys of each command kind are
the wire contract's (``factory.wire.COMMANDS``), which the workflow steps read.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from factory import wire
from factory.siteagent.devices import Device, DeviceError
from factory.wire import OEM, CommandKind, CommandParam, HardwareState, OemAction, SystemOem

TASK_TIMEOUT_S = 1800.0
SYSTEM = wire.SYSTEM_PATH
# Commands that change the state and answer with it (HardwareState), by the action they take.
STATE_ACTIONS: dict[str, OemAction] = {
    CommandKind.DRAIN: OemAction.DRAIN,
    CommandKind.UNDRAIN: OemAction.UNDRAIN,
}


def query_state(bmc: Device) -> dict:
    system = bmc.get(SYSTEM)
    oem = (system.get("Oem") or {}).get(OEM, {})
    return {
        HardwareState.FIRMWARE_VERSION: system.get("BiosVersion", ""),
        HardwareState.INACTIVE_FIRMWARE_VERSION: oem.get(SystemOem.INACTIVE_FIRMWARE_VERSION, ""),
        HardwareState.DRAINED: bool(oem.get(SystemOem.DRAINED)),
        HardwareState.CABLED: bool(oem.get(SystemOem.CABLED)),
        HardwareState.POWER_STATE: system.get("PowerState", ""),
    }


def _wait_task(bmc: Device, location: str, poll_s: float) -> dict:
    deadline = time.monotonic() + TASK_TIMEOUT_S
    while time.monotonic() < deadline:
        task = bmc.get(location)
        if task.get("TaskState") in ("Completed", "Exception", "Killed", "Cancelled"):
            return task
        time.sleep(poll_s)
    raise DeviceError(f"{bmc.serial}: task {location} did not finish")


def _task_failed(task: dict) -> str | None:
    if task.get("TaskState") == "Completed" and task.get("TaskStatus") == "OK":
        return None
    messages = "; ".join(m.get("Message", "") for m in task.get("Messages", []))
    return messages or f"task ended {task.get('TaskState')}"


def _action(bmc: Device, path: str, body: dict, poll_s: float) -> tuple[bool, dict, str]:
    status, payload, headers = bmc.post(path, body)
    if status == 202:
        location = headers.get("Location") or headers.get("location") or payload.get("@odata.id")
        if not isinstance(location, str) or not location:
            return False, {}, f"{path}: accepted, but no task to follow"
        task = _wait_task(bmc, location, poll_s)
        failed = _task_failed(task)
        if failed:
            return False, {}, failed
        return True, (task.get("Oem") or {}).get(OEM, {}), ""
    if status in (200, 204):
        return True, payload, ""
    message = (payload.get("error") or {}).get("message") or f"HTTP {status}"
    return False, {}, f"{path}: {message}"


def interconnect_check(bmc: Device) -> dict:
    chips = bmc.get(f"{SYSTEM}/Processors").get("Members", [])
    ports: list[str] = []
    for chip in chips:
        ports.extend(m["@odata.id"] for m in bmc.get(f"{chip['@odata.id']}/Ports")["Members"])
    with ThreadPoolExecutor(max_workers=4) as pool:
        states = list(pool.map(lambda p: (p, bmc.get(p).get("LinkStatus")), ports))
    down = [p.split("/Processors/", 1)[1] for p, status in states if status != "LinkUp"]
    return {
        wire.InterconnectResult.LINKS_OK: len(states) - len(down),
        wire.InterconnectResult.LINKS_DOWN: down,
    }


def execute(
    bmc: Device, kind: str, params: dict, *, image_base: str, poll_s: float = 1.0
) -> tuple[bool, dict, str]:
    try:
        if kind in (CommandKind.QUERY_STATE, CommandKind.INSTALL_CHECK):
            return True, query_state(bmc), ""
        if kind == CommandKind.FLASH_FIRMWARE:
            image = wire.firmware_image_uri(
                image_base, params.get(CommandParam.ORIGIN, "unknown"), params[CommandParam.VERSION]
            )
            ok, _, error = _action(
                bmc,
                wire.SIMPLE_UPDATE_PATH,
                {"ImageURI": image, "TransferProtocol": "HTTPS"},
                poll_s,
            )
            return ok, query_state(bmc), error
        if kind == CommandKind.ACTIVATE_BANK:
            ok, _, error = _action(
                bmc,
                wire.oem_action_path(OemAction.ACTIVATE_BANK),
                {wire.ACTIVATE_BANK_VERSION: params[CommandParam.VERSION]},
                poll_s,
            )
            return ok, query_state(bmc), error
        if kind == CommandKind.RESET:
            ok, _, error = _action(
                bmc,
                wire.RESET_PATH,
                {"ResetType": params.get(CommandParam.RESET_TYPE, "ForceRestart")},
                poll_s,
            )
            return ok, query_state(bmc), error
        if kind == CommandKind.BURN_IN:
            return _action(bmc, wire.oem_action_path(OemAction.BURN_IN), {}, poll_s)
        if kind in STATE_ACTIONS:
            ok, _, error = _action(bmc, wire.oem_action_path(STATE_ACTIONS[kind]), {}, poll_s)
            return ok, query_state(bmc), error
        if kind == CommandKind.INTERCONNECT_CHECK:
            return True, interconnect_check(bmc), ""
    except DeviceError as exc:
        return False, {}, str(exc)
    except KeyError as exc:
        return False, {}, f"missing parameter {exc}"
    return False, {}, f"unknown command {kind}"
