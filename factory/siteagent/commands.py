"""Commands from the control plane, carried out on the BMC through Redfish.

Each returns ``(ok, result, error)``; results follow the contract the workflow steps read
(``query-state``: firmware_version, inactive_firmware_version, drained, cabled, power_state;
``burn-in``: tested, failed_chips[{index, detail}]).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from factory.siteagent.devices import OEM, SYSTEM, Device, DeviceError

TASK_TIMEOUT_S = 1800.0


def query_state(bmc: Device) -> dict:
    system = bmc.get(SYSTEM)
    oem = (system.get("Oem") or {}).get(OEM, {})
    return {
        "firmware_version": system.get("BiosVersion", ""),
        "inactive_firmware_version": oem.get("InactiveFirmwareVersion", ""),
        "drained": bool(oem.get("Drained")),
        "cabled": bool(oem.get("Cabled")),
        "power_state": system.get("PowerState", ""),
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
    ports = []
    for chip in chips:
        ports.extend(m["@odata.id"] for m in bmc.get(f"{chip['@odata.id']}/Ports")["Members"])
    with ThreadPoolExecutor(max_workers=4) as pool:
        states = list(pool.map(lambda p: (p, bmc.get(p).get("LinkStatus")), ports))
    down = [p.split("/Processors/", 1)[1] for p, status in states if status != "LinkUp"]
    return {"links_ok": len(states) - len(down), "links_down": down}


def execute(
    bmc: Device, kind: str, params: dict, *, image_base: str, poll_s: float = 1.0
) -> tuple[bool, dict, str]:
    oem = f"{SYSTEM}/Actions/Oem/{OEM}."
    try:
        if kind in ("query-state", "install-check"):
            return True, query_state(bmc), ""
        if kind == "flash-firmware":
            image = f"{image_base}/{params.get('origin', 'unknown')}/{params['version']}.bin"
            ok, _, error = _action(
                bmc,
                "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate",
                {"ImageURI": image, "TransferProtocol": "HTTPS"},
                poll_s,
            )
            return ok, query_state(bmc), error
        if kind == "activate-bank":
            ok, _, error = _action(
                bmc, f"{oem}ActivateBank", {"Version": params["version"]}, poll_s
            )
            return ok, query_state(bmc), error
        if kind == "reset":
            ok, _, error = _action(
                bmc,
                f"{SYSTEM}/Actions/ComputerSystem.Reset",
                {"ResetType": params.get("reset_type", "ForceRestart")},
                poll_s,
            )
            return ok, query_state(bmc), error
        if kind == "burn-in":
            return _action(bmc, f"{oem}BurnIn", {}, poll_s)
        if kind in ("drain", "undrain"):
            ok, _, error = _action(bmc, f"{oem}{kind.capitalize()}", {}, poll_s)
            return ok, query_state(bmc), error
        if kind == "interconnect-check":
            return True, interconnect_check(bmc), ""
    except DeviceError as exc:
        return False, {}, str(exc)
    except KeyError as exc:
        return False, {}, f"missing parameter {exc}"
    return False, {}, f"unknown command {kind}"
