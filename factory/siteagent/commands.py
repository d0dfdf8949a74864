"""Commands from the control plane, carried out on the BMC through standard Redfish.

Each returns ``(ok, result, error)``; the parameters and result keys of each command kind are
the wire contract's (``factory.wire.COMMANDS``), which the workflow steps read.

Nothing here assumes one vendor's URIs: the system, its reset and OEM actions, the update
service and its firmware inventory are found from the service root, an OEM action by its name
under ``Actions.Oem`` (``#<namespace>.Drain``), and a long operation is followed through its
task monitor (DSP0266 §12.2) to the Task that tells its true outcome.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, cast

import requests

from factory import wire
from factory.siteagent.devices import Answer, Device, DeviceError
from factory.wire import (
    OEM,
    CommandKind,
    CommandParam,
    FirmwareComponent,
    HardwareState,
    OemAction,
    SystemOem,
)

log = logging.getLogger("factory.siteagent.commands")
TASK_TIMEOUT_S = 1800.0
#: Fetching a firmware image to check its digest: per read, and the chunk it hashes at a time.
IMAGE_TIMEOUT_S, IMAGE_CHUNK = 60.0, 1 << 20
IMAGE_IN_MEMORY = 16 << 20  # an image larger than this spools to disk
#: Retry-After is the device's wish; a wait outside these bounds is clamped to them.
MIN_WAIT_S, MAX_WAIT_S = 0.05, 60.0
SYSTEM = wire.SYSTEM_PATH
TERMINAL = ("Completed", "Exception", "Killed", "Cancelled", "Interrupted", "Suspended")
# Commands that change the state and answer with it (HardwareState), by the action they take.
STATE_ACTIONS: dict[str, OemAction] = {
    CommandKind.DRAIN: OemAction.DRAIN,
    CommandKind.UNDRAIN: OemAction.UNDRAIN,
}

#: Which FirmwareComponent a FirmwareInventory entry is, by words in its SoftwareId, Id or Name
#: (lower case, letters and digits only), first match wins: the one place vendors' names map.
FIRMWARE_NAMES: tuple[tuple[FirmwareComponent, tuple[str, ...]], ...] = (
    (FirmwareComponent.BMC, ("bmc", "manager", "baseboardmanagement")),
    (FirmwareComponent.BIOS, ("bios", "uefi", "systemfirmware", "hostfirmware", "systemrom")),
    (FirmwareComponent.NIC, ("nic", "networkadapter", "ethernet", "networkinterface")),
    (FirmwareComponent.SWITCH_TRAY, ("switchtray", "switch", "fabric")),
    (FirmwareComponent.ACCELERATOR_TRAY, ("acceleratortray", "accelerator", "gpu", "tray")),
    (FirmwareComponent.POWER_SHELF, ("powershelf", "psu", "powersupply", "power")),
)
#: What a component reports when its entries disagree (one of 18 trays left on old firmware):
#: ``mixed:`` and the distinct versions, a value no bundle names, so verification fails.
MIXED_PREFIX = "mixed:"
#: Words that mark a standby image (the other A/B bank), beside ``Status.State`` StandbySpare.
STANDBY_WORDS = ("inactive", "standby", "backup", "secondary", "bankb", "recovery")


def _squash(text: object) -> str:
    return "".join(c for c in str(text or "").lower() if c.isalnum())


def firmware_component(entry: Mapping[str, object]) -> FirmwareComponent | None:
    """The component a SoftwareInventory entry is the firmware of, or None: a SoftwareId
    ending in a component's name, else the first FIRMWARE_NAMES word in its SoftwareId, Id
    or Name (in that order: the vendor's id says more than a display name)."""
    software_id = _squash(entry.get("SoftwareId"))
    for component in FirmwareComponent:
        if software_id.endswith(_squash(component.value)):
            return component
    for key in ("SoftwareId", "Id", "Name"):
        words = _squash(entry.get(key))
        for component, names in FIRMWARE_NAMES:
            if words and any(name in words for name in names):
                return component
    return None


def components_named(entry: Mapping[str, object]) -> list[FirmwareComponent]:
    """Every component whose FIRMWARE_NAMES words an entry's SoftwareId, Id or Name contains
    (more than one: the guess of ``firmware_component`` is worth a look)."""
    words = " ".join(_squash(entry.get(key)) for key in ("SoftwareId", "Id", "Name"))
    return [c for c, names in FIRMWARE_NAMES if any(name in words for name in names)]


def is_standby(entry: Mapping[str, object]) -> bool:
    status = entry.get("Status")
    state = status.get("State") if isinstance(status, dict) else ""
    words = " ".join(_squash(entry.get(k)) for k in ("Id", "Name"))
    return state == "StandbySpare" or any(w in words for w in STANDBY_WORDS)


# --- discovery ---------------------------------------------------------------------------


def _link(body: Mapping[str, object], name: str) -> str | None:
    value = body.get(name)
    if isinstance(value, dict) and isinstance(value.get("@odata.id"), str):
        return value["@odata.id"]
    return None


def _discover(bmc: Device, key: str, find: Callable[[], str]) -> str:
    """A URI found once per device and kept (the service's layout does not change)."""
    cached = bmc.discovered.get(key)
    if cached is None:
        cached = find()
        bmc.discovered[key] = cached
    return cached


def system_uri(bmc: Device) -> str:
    def find() -> str:
        root = bmc.get(wire.REDFISH_ROOT)
        systems = _link(root, "Systems")
        if systems:
            members = bmc.get(systems).get("Members") or []
            if members:
                return str(members[0]["@odata.id"])
        return SYSTEM

    return _discover(bmc, "system", find)


def update_service_uri(bmc: Device) -> str:
    return _discover(
        bmc,
        "update",
        lambda: (
            _link(bmc.get(wire.REDFISH_ROOT), "UpdateService")
            or f"{wire.REDFISH_ROOT}/UpdateService"
        ),
    )


def oem_actions(system: Mapping[str, object]) -> dict[str, tuple[str, str]]:
    """``{action name: (namespace, target)}`` of the system's ``Actions.Oem`` (``#Ns.Drain``
    directly, or nested one level under a namespace)."""
    found: dict[str, tuple[str, str]] = {}
    actions = system.get("Actions") or {}
    oem = actions.get("Oem") if isinstance(actions, dict) else None

    def walk(entries: Mapping[str, object]) -> None:
        for key, value in entries.items():
            if not isinstance(value, dict):
                continue
            if key.startswith("#") and isinstance(value.get("target"), str):
                namespace, _, name = key[1:].rpartition(".")
                found[name] = (namespace, value["target"])
            elif not key.startswith("#"):
                walk(value)

    if isinstance(oem, dict):
        walk(oem)
    return found


def oem_action(bmc: Device, action: OemAction) -> tuple[str, str]:
    """The namespace and target of an OEM action, by its name; a DeviceError if the device
    has none (it cannot do that)."""
    found = oem_actions(bmc.get(system_uri(bmc))).get(action.value)
    if found is None:
        raise DeviceError(f"{bmc.serial}: the system offers no OEM action {action.value}")
    return found


def oem_section(body: Mapping[str, object], namespace: str | None = None) -> dict:
    """A resource's ``Oem`` section: the given namespace's, else ours, else the only one."""
    oem = body.get("Oem")
    if not isinstance(oem, dict) or not oem:
        return {}
    for name in (namespace, OEM):
        if name and isinstance(oem.get(name), dict):
            return oem[name]
    sections = [v for v in oem.values() if isinstance(v, dict)]
    return sections[0] if len(sections) == 1 else {}


# --- state -------------------------------------------------------------------------------


def firmware_inventory(bmc: Device) -> list[dict]:
    """Every SoftwareInventory entry of the update service's FirmwareInventory."""
    service = bmc.get(update_service_uri(bmc))
    inventory = _link(service, "FirmwareInventory")
    if not inventory:
        return []
    members = bmc.get(inventory).get("Members") or []
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda m: bmc.get(m["@odata.id"]), members))


def query_state(bmc: Device) -> dict:
    system = bmc.get(system_uri(bmc))
    namespaces = {ns for ns, _ in oem_actions(system).values()}
    oem = oem_section(system, next(iter(namespaces), None))
    state: dict[str, object] = {
        HardwareState.FIRMWARE_VERSION: system.get("BiosVersion", ""),
        HardwareState.INACTIVE_FIRMWARE_VERSION: oem.get(SystemOem.INACTIVE_FIRMWARE_VERSION, ""),
        HardwareState.DRAINED: bool(oem.get(SystemOem.DRAINED)),
        HardwareState.CABLED: bool(oem.get(SystemOem.CABLED)),
        HardwareState.POWER_STATE: system.get("PowerState", ""),
    }
    try:
        entries = firmware_inventory(bmc)
    except DeviceError:
        return state  # no inventory to read: the OEM property stands
    inventory, standby = inventory_versions(entries)
    if inventory:
        state[HardwareState.FIRMWARE_INVENTORY] = inventory
    if FirmwareComponent.BIOS in standby or None in standby:
        state[HardwareState.INACTIVE_FIRMWARE_VERSION] = standby.get(
            FirmwareComponent.BIOS, standby.get(None, "")
        )
    return state


_warned: set[str] = set()


def _warn_once(key: str, message: str, *args: object) -> None:
    """A puzzling inventory entry, told once per run (state is read after every command)."""
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


def _agreed(versions: list[str]) -> str:
    """One component's version from all its entries: theirs when they agree, else
    ``mixed:`` and the distinct ones (never a version a bundle names)."""
    distinct = sorted(set(versions))
    return distinct[0] if len(distinct) == 1 else MIXED_PREFIX + ",".join(distinct)


def inventory_versions(
    entries: Iterable[Mapping[str, object]],
) -> tuple[dict[str, str], dict[FirmwareComponent | None, str]]:
    """``({component: running version}, {component or None: standby version})``: a component
    with several entries (a tray each) is at a version only when every entry is; the A/B
    bank's standby image is the system firmware's (BIOS) when the entry names no component.
    An entry that names no component, or several, is logged: FIRMWARE_NAMES may need a word."""
    running: dict[str, list[str]] = {}
    standby: dict[FirmwareComponent | None, list[str]] = {}
    for entry in entries:
        version = entry.get("Version")
        if not isinstance(version, str):
            continue
        component = firmware_component(entry)
        named = components_named(entry)
        where = str(entry.get("@odata.id") or entry.get("Id") or entry.get("Name"))
        if component is None:
            _warn_once(where, "firmware entry %s names no component; not reported", where)
        elif len(named) > 1:
            _warn_once(
                where,
                "firmware entry %s could be %s; taken as %s",
                where,
                ", ".join(c.value for c in named),
                component.value,
            )
        if is_standby(entry):
            standby.setdefault(component, []).append(version)
        elif component is not None:
            running.setdefault(component.value, []).append(version)
    return (
        {c: _agreed(v) for c, v in running.items()},
        {c: _agreed(v) for c, v in standby.items()},
    )


def inventory_targets(bmc: Device, component: str) -> list[str]:
    """The FirmwareInventory URIs of a component's running images (SimpleUpdate ``Targets``):
    every entry of it, so no tray is left on the old version."""
    wanted = FirmwareComponent(component)
    found = [
        str(entry["@odata.id"])
        for entry in firmware_inventory(bmc)
        if firmware_component(entry) == wanted and not is_standby(entry)
    ]
    if not found:
        raise DeviceError(f"{bmc.serial}: no firmware component {component} in FirmwareInventory")
    return found


# --- long operations ---------------------------------------------------------------------


def _is_task(body: Mapping[str, object]) -> bool:
    return "TaskState" in body or "#Task." in str(body.get("@odata.type", ""))


def _wait(answer: Answer, poll_s: float, deadline: float) -> None:
    wished = answer.retry_after()
    wait = min(max(poll_s if wished is None else wished, MIN_WAIT_S), MAX_WAIT_S)
    time.sleep(max(0.0, min(wait, deadline - time.monotonic())))


def _task_failed(task: Mapping[str, object]) -> str | None:
    if task.get("TaskState") == "Completed" and task.get("TaskStatus", "OK") in ("OK", "Warning"):
        return None
    listed = task.get("Messages")
    messages = "; ".join(
        str(m.get("Message", ""))
        for m in (listed if isinstance(listed, list) else [])
        if isinstance(m, dict)
    )
    return messages or f"task ended {task.get('TaskState')} ({task.get('TaskStatus')})"


def _finish_task(bmc: Device, task_uri: str, poll_s: float, deadline: float) -> dict:
    """The Task once terminal (a monitor may finish a moment before its Task says so)."""
    while True:
        answer = bmc.request("GET", task_uri)
        if answer.status != 200:
            raise DeviceError(f"{bmc.serial}: task {task_uri} answered {answer.status}")
        if answer.body.get("TaskState") in TERMINAL or time.monotonic() >= deadline:
            return answer.body
        _wait(answer, poll_s, deadline)


def follow(
    bmc: Device, accepted: Answer, poll_s: float, timeout_s: float = TASK_TIMEOUT_S
) -> tuple[bool, dict, str]:
    """Follow a 202: poll the task monitor at ``Location`` honouring ``Retry-After`` until it
    answers other than 202, then read the Task (from the 202 body's or the monitor's
    ``@odata.id``) for the true outcome. Also takes a service that puts the Task itself at
    ``Location`` and answers 200 with its TaskState while running (older firmware)."""
    location = accepted.headers.get("Location") or accepted.body.get("@odata.id")
    if not isinstance(location, str) or not location:
        return False, {}, "accepted, but no task monitor to follow"
    task_uri = accepted.body.get("@odata.id") if _is_task(accepted.body) else None
    deadline = time.monotonic() + timeout_s
    answer = accepted
    while True:
        _wait(answer, poll_s, deadline)
        if time.monotonic() >= deadline:
            return False, {}, f"task monitor {location} did not finish in {timeout_s:.0f} s"
        answer = bmc.request("GET", location)
        if answer.status == 202:
            if _is_task(answer.body):
                task_uri = answer.body.get("@odata.id") or task_uri
            continue
        if answer.status == 200 and _is_task(answer.body):
            task_uri = answer.body.get("@odata.id") or location
            if answer.body.get("TaskState") not in TERMINAL:
                continue  # the Task itself at Location, still running
            task = answer.body
            break
        if answer.status in (200, 204):
            if not task_uri:
                return True, answer.body, ""  # the operation's own answer: done
            task = _finish_task(bmc, str(task_uri), poll_s, deadline)
            break
        if answer.status == 404 and task_uri:
            task = _finish_task(bmc, str(task_uri), poll_s, deadline)  # monitor gone: ask Task
            break
        # The operation's error response: it failed; its Task says why, where there is one.
        why = answer.message()
        if task_uri:
            with contextlib.suppress(DeviceError):
                why = _task_failed(_finish_task(bmc, str(task_uri), poll_s, deadline)) or why
        return False, {}, why
    failed = _task_failed(task)
    if failed:
        return False, {}, failed
    return True, task, ""


def _action(
    bmc: Device, path: str, body: dict, poll_s: float, namespace: str | None = None
) -> tuple[bool, dict, str]:
    """POST an action; the result is its OEM section (the Task's, for a long operation)."""
    return _outcome(bmc, path, bmc.request("POST", path, body), poll_s, namespace)


def _outcome(
    bmc: Device, path: str, answer: Answer, poll_s: float, namespace: str | None = None
) -> tuple[bool, dict, str]:
    """What a POST came to: followed to its end when it answered 202 with a Task."""
    if answer.status == 202:
        ok, final, error = follow(bmc, answer, poll_s)
        return ok, oem_section(final, namespace) if ok else {}, error and f"{path}: {error}"
    if answer.status in (200, 204):
        return True, answer.body, ""
    return False, {}, f"{path}: {answer.message()}"


def interconnect_check(bmc: Device) -> dict:
    chips = bmc.get(f"{system_uri(bmc)}/Processors").get("Members", [])
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


@contextlib.contextmanager
def fetched_image(uri: str, timeout_s: float = IMAGE_TIMEOUT_S) -> Iterator[tuple[BinaryIO, str]]:
    """The image at ``uri``, fetched once into a spooled file (images are large), with its
    SHA-256 (hex); DeviceError when it cannot be fetched whole."""
    digest = hashlib.sha256()
    with tempfile.SpooledTemporaryFile(max_size=IMAGE_IN_MEMORY) as spool:
        try:
            with requests.get(uri, stream=True, timeout=timeout_s) as answer:
                if answer.status_code != 200:
                    raise DeviceError(f"image {uri}: HTTP {answer.status_code}")
                for chunk in answer.iter_content(IMAGE_CHUNK):
                    digest.update(chunk)
                    spool.write(chunk)
        except requests.RequestException as exc:
            raise DeviceError(f"image {uri}: {exc}") from None
        spool.seek(0)
        yield cast(BinaryIO, spool), digest.hexdigest()


def _refusal(image: str, found: str, expected: str) -> str | None:
    """Why the image is not flashed: its digest is not the signed one (None: it is, or the
    command names none)."""
    if not expected or hmac.compare_digest(found, expected):
        return None
    return f"image {image} has sha256 {found}, not the signed {expected}: refused, nothing flashed"


def flash(
    bmc: Device, params: Mapping[str, object], image_base: str, poll_s: float
) -> tuple[bool, dict, str]:
    """Flash the image of ``version``. The agent fetches it once and, given a ``sha256`` (the
    control plane sends the one whose signature it verified), refuses it, flashing nothing,
    when its digest differs. Where the UpdateService offers ``MultipartHttpPushUri`` the agent
    pushes those very bytes, so the BMC cannot be given other ones by a second fetch; a BMC
    with only SimpleUpdate is given the URI, and the result says it fetched the image itself."""
    image = wire.firmware_image_uri(
        image_base,
        str(params.get(CommandParam.ORIGIN, "unknown")),
        str(params[CommandParam.VERSION]),
    )
    expected = str(params.get(CommandParam.DIGEST) or "").lower()
    service = bmc.get(update_service_uri(bmc))
    component = params.get(CommandParam.COMPONENT)
    targets = inventory_targets(bmc, str(component)) if component else None
    push = service.get("MultipartHttpPushUri")
    if isinstance(push, str) and push:
        with fetched_image(image) as (content, found):
            refused = _refusal(image, found, expected)
            if refused:
                return False, {}, refused
            limit = service.get("MaxImageSizeBytes")
            size = content.seek(0, 2)
            if isinstance(limit, int) and size > limit:
                return False, {}, f"image {image} is {size} B, over the BMC's {limit} B"
            answer = bmc.upload(
                push,
                {} if targets is None else {"Targets": targets},
                image.rsplit("/", 1)[-1],
                content,
                timeout=IMAGE_TIMEOUT_S,
            )
        return _outcome(bmc, push, answer, poll_s)
    if expected:
        with fetched_image(image) as (_, found):
            refused = _refusal(image, found, expected)
        if refused:
            return False, {}, refused
    simple = (service.get("Actions") or {}).get("#UpdateService.SimpleUpdate") or {}
    target = simple.get("target") or wire.SIMPLE_UPDATE_PATH
    body: dict[str, object] = {"ImageURI": image}
    allowed = simple.get("TransferProtocol@Redfish.AllowableValues")
    if image.startswith("https://") and (allowed is None or "HTTPS" in allowed):
        body["TransferProtocol"] = "HTTPS"
    if targets is not None:
        body["Targets"] = targets
    return _action(bmc, target, body, poll_s)


def reset(bmc: Device, reset_type: str, poll_s: float) -> tuple[bool, dict, str]:
    system = bmc.get(system_uri(bmc))
    action = (system.get("Actions") or {}).get("#ComputerSystem.Reset") or {}
    allowed = action.get("ResetType@Redfish.AllowableValues")
    if allowed is not None and reset_type not in allowed:
        return False, {}, f"ResetType {reset_type} is not one of {', '.join(allowed)}"
    return _action(bmc, action.get("target") or wire.RESET_PATH, {"ResetType": reset_type}, poll_s)


def execute(
    bmc: Device, kind: str, params: dict, *, image_base: str, poll_s: float = 1.0
) -> tuple[bool, dict, str]:
    try:
        if kind in (CommandKind.QUERY_STATE, CommandKind.INSTALL_CHECK):
            return True, query_state(bmc), ""
        if kind == CommandKind.FLASH_FIRMWARE:
            ok, _, error = flash(bmc, params, image_base, poll_s)
            return ok, query_state(bmc), error
        if kind == CommandKind.ACTIVATE_BANK:
            namespace, target = oem_action(bmc, OemAction.ACTIVATE_BANK)
            ok, _, error = _action(
                bmc, target, {wire.ACTIVATE_BANK_VERSION: params[CommandParam.VERSION]}, poll_s
            )
            return ok, query_state(bmc), error
        if kind == CommandKind.RESET:
            ok, _, error = reset(bmc, params.get(CommandParam.RESET_TYPE, "ForceRestart"), poll_s)
            return ok, query_state(bmc), error
        if kind == CommandKind.BURN_IN:
            namespace, target = oem_action(bmc, OemAction.BURN_IN)
            return _action(bmc, target, {}, poll_s, namespace)
        if kind in STATE_ACTIONS:
            _, target = oem_action(bmc, STATE_ACTIONS[kind])
            ok, _, error = _action(bmc, target, {}, poll_s)
            return ok, query_state(bmc), error
        if kind == CommandKind.INTERCONNECT_CHECK:
            return True, interconnect_check(bmc), ""
    except DeviceError as exc:
        return False, {}, str(exc)
    except KeyError as exc:
        return False, {}, f"missing parameter {exc}"
    except ValueError as exc:  # a component that is no FirmwareComponent
        return False, {}, f"bad parameter: {exc}"
    return False, {}, f"unknown command {kind}"
