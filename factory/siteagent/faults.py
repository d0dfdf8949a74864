"""Faults found by polling, beside (and in case of) a device's event stream.

The BMC's chip report, polled anyway, shows a chip failing (``health`` to Critical) and HBM
failing (uncorrectable ECC counting up); leak detectors are read every poll. What polling finds
new is always sent, also while the device's stream seems live: a stream can be dead without
anyone knowing yet, and the control plane keeps one open fault per key, so an event that the
stream brought too is harmless. Each device's last seen state is kept, so an old fault is told
once, not every poll.
"""

from __future__ import annotations

from collections.abc import Mapping

from factory import wire
from factory.siteagent.devices import Device, DeviceError
from factory.wire import OEM, DeviceKind, EventKind, HealthCode, Metric, ReportKey


class ChipWatch:
    """One BMC's chips as its reports last showed them."""

    def __init__(self) -> None:
        self.health: list[int] | None = None
        self.ecc: list[int] | None = None

    def see(self, report: Mapping[str, object]) -> list[wire.Event]:
        """The events a new chip report shows since the last one (none for the first)."""
        oem = report["Oem"][OEM]  # type: ignore[index]
        chips = oem.get(ReportKey.CHIPS) or {}
        source, stamp = oem[ReportKey.SOURCE], str(report.get("Timestamp", ""))
        health = [int(v) for v in chips.get(Metric.HEALTH, [])]
        ecc = [int(v) for v in chips.get(Metric.ECC_UNCORRECTED, [])]
        events: list[wire.Event] = []
        if self.ecc is not None:
            for chip, count in enumerate(ecc):
                if chip < len(self.ecc) and count > self.ecc[chip]:
                    events.append(
                        _event(
                            source, EventKind.HBM_FAILURE, stamp, chip, "HBM ECC", DeviceKind.BMC
                        )
                    )
        hbm = {e.get("chip") for e in events}
        if self.health is not None:
            for chip, code in enumerate(health):
                was = self.health[chip] if chip < len(self.health) else HealthCode.OK
                if code == HealthCode.FAILED and was != HealthCode.FAILED and chip not in hbm:
                    events.append(
                        _event(
                            source,
                            EventKind.CHIP_FAILURE,
                            stamp,
                            chip,
                            "chip health Critical",
                            DeviceKind.BMC,
                        )
                    )
        if health:
            self.health = health
        if ecc:
            self.ecc = ecc
        return events


def _event(
    source: str, kind: str, stamp: str, chip: int | None, message: str, device_kind: str
) -> wire.Event:
    event = wire.Event(
        source=source, kind=kind, message=message, timestamp=stamp, device_kind=device_kind
    )
    if chip is not None:
        event["chip"] = chip
        event["message"] = f"{message} on chip {chip}"
    return event


def _members(device: Device, path: str) -> list[str]:
    return [m["@odata.id"] for m in device.get(path).get("Members") or []]


def _link(body: Mapping[str, object], name: str) -> str | None:
    value = body.get(name)
    return value.get("@odata.id") if isinstance(value, dict) else None


def leak_sources(device: Device) -> list[str]:
    """Where the device reports its leak detectors: each LeakDetection resource (a chassis'
    ThermalSubsystem, a CDU), else the LeakDetectors collections of its chassis (trays)."""
    root = device.get(wire.REDFISH_ROOT)
    detections: list[str] = []
    collections: list[str] = []
    chassis = _link(root, "Chassis")
    for member in _members(device, chassis) if chassis else []:
        body = device.get(member)
        thermal = _link(body, "ThermalSubsystem")
        found = _link(device.get(thermal), "LeakDetection") if thermal else None
        if found:
            detections.append(found)
        if _link(body, "LeakDetectors"):
            collections.append(str(_link(body, "LeakDetectors")))
    equipment = _link(root, "ThermalEquipment")
    cdus = _link(device.get(equipment), "CDUs") if equipment else None
    for member in _members(device, cdus) if cdus else []:
        found = _link(device.get(member), "LeakDetection")
        if found:
            detections.append(found)
    return detections or collections


def detector_states(device: Device, source: str) -> dict[str, str]:
    """``{detector URI: DetectorState}`` of one LeakDetection (its ``LeakDetectorGroups``
    excerpts in one GET, else its LeakDetectors) or one LeakDetectors collection."""
    body = device.get(source)
    states: dict[str, str] = {}
    groups = body.get("LeakDetectorGroups")
    if isinstance(groups, list) and groups:
        for group in groups:
            for detector in group.get("Detectors") or []:
                uri = detector.get("DataSourceUri") or detector.get("DeviceName") or ""
                states[uri] = str(detector.get("DetectorState") or "OK")
        return states
    collection = _link(body, "LeakDetectors") if "Members" not in body else source
    for uri in _members(device, collection) if collection else []:
        detector = device.get(uri)
        state = detector.get("DetectorState") or (detector.get("Status") or {}).get("Health")
        states[uri] = str(state or "OK")
    return states


class LeakWatch:
    """One device's leak detectors and which of them last read a leak."""

    def __init__(self) -> None:
        self.sources: list[str] | None = None
        self.leaking: set[str] = set()

    def poll(self, device: Device, stamp: str, tell: bool = True) -> list[wire.Event]:
        """Read every detector; one newly out of OK is a leak event (when ``tell``)."""
        if self.sources is None:
            try:
                self.sources = leak_sources(device)
            except DeviceError:
                return []
        events: list[wire.Event] = []
        for source in self.sources:
            for uri, state in detector_states(device, source).items():
                if state in ("Warning", "Critical"):
                    if uri not in self.leaking and tell:
                        where = uri.rsplit("/", 1)[-1]
                        events.append(
                            _event(
                                device.serial,
                                EventKind.LEAK,
                                stamp,
                                None,
                                f"leak at {where}",
                                device.kind,
                            )
                        )
                    self.leaking.add(uri)
                else:
                    self.leaking.discard(uri)
        return events
