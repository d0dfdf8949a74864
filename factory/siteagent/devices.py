"""The site's devices as the agent reaches them: DMTF's ``redfish`` client, at most
``MAX_CONNECTIONS`` requests at a time to any one BMC (BMCs are small computers)."""

from __future__ import annotations

import datetime as dt
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redfish
from redfish.rest.v1 import HttpClient

from factory import wire
from factory.wire import OEM, FeedReading, ReportId, ReportKey

MAX_CONNECTIONS = 4
SYSTEM = wire.SYSTEM_PATH
# Redfish MetricValues are strings; these metrics travel on as floats, the rest as integers.
FLOAT_METRICS = tuple(m.name for m in wire.CHIP_METRICS if not m.type.integral)


class DeviceError(Exception):
    pass


class Device:
    def __init__(
        self,
        kind: str,
        serial: str,
        url: str,
        username: str,
        password: str,
        timeout: float = 10.0,
        **extra: object,
    ):
        self.kind = kind
        self.serial = serial
        self.url = url
        self.username = username
        self.password = password
        self.timeout = timeout
        self.extra = extra  # what the listing says beyond kind, serial, url: rack, position...
        self._idle: queue.LifoQueue[HttpClient] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    @contextmanager
    def client(self) -> Iterator[HttpClient]:
        """One of at most MAX_CONNECTIONS logged-in clients for this device."""
        with self._slots:
            try:
                client = self._idle.get_nowait()
            except queue.Empty:
                try:
                    client = redfish.redfish_client(
                        base_url=self.url,
                        username=self.username,
                        password=self.password,
                        timeout=self.timeout,
                        max_retry=1,
                    )
                    client.login(auth="basic")
                except Exception as exc:
                    raise DeviceError(f"{self.serial}: cannot reach {self.url}: {exc}") from exc
            ok = False
            try:
                yield client
                ok = True
            finally:
                if ok:
                    self._idle.put(client)

    def get(self, path: str) -> dict:
        with self.client() as client:
            try:
                response = client.get(path)
            except Exception as exc:
                raise DeviceError(f"{self.serial}: GET {path}: {exc}") from exc
        if response.status != 200:
            raise DeviceError(f"{self.serial}: GET {path} answered {response.status}")
        return response.dict

    def post(self, path: str, body: dict) -> tuple[int, dict, dict]:
        with self.client() as client:
            try:
                response = client.post(path, body=body)
            except Exception as exc:
                raise DeviceError(f"{self.serial}: POST {path}: {exc}") from exc
        try:
            payload = response.dict if response.read else {}
        except ValueError:
            payload = {}
        return response.status, payload or {}, dict(response.getheaders() or {})


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _report(report_id: ReportId, source: str, oem: dict, stamp: str | None = None) -> dict:
    return {
        "@odata.type": wire.METRIC_REPORT_TYPE,
        "Id": report_id.value,
        "Timestamp": stamp or now_iso(),
        "MetricValues": [],
        "Oem": {OEM: {ReportKey.SOURCE: source, **oem}},
    }


def _number(text: str) -> int | float:
    """Redfish MetricValue is a string: counters as integers, the rest as floats."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def poll_bmc(device: Device) -> dict:
    """The BMC's per-chip MetricReport, turned into one list per metric."""
    report = device.get(wire.CHIP_REPORT_PATH)
    columns: dict[str, list] = {}
    for value in report.get("MetricValues", []):
        index = wire.chip_index(value.get("MetricProperty", ""))
        column = columns.setdefault(value["MetricId"], [])
        if len(column) <= index:
            column.extend([0] * (index + 1 - len(column)))
        column[index] = _number(value["MetricValue"])
    for metric in FLOAT_METRICS:
        if metric in columns:
            columns[metric] = [float(v) for v in columns[metric]]
    return _report(
        ReportId.CHIPS, device.serial, {ReportKey.CHIPS: columns}, report.get("Timestamp")
    )


def poll_pdu(device: Device) -> dict:
    feeds = {}
    collection = device.get(wire.RACK_PDUS_PATH)
    for member in collection.get("Members", []):
        unit = device.get(member["@odata.id"])
        mains = device.get(f"{member['@odata.id']}/{wire.PDU_MAINS}")
        feeds[unit["Id"]] = {
            FeedReading.POWER_W: float((mains.get("PowerWatts") or {}).get("Reading") or 0.0),
            FeedReading.UP: mains.get("PowerState") == "On",
        }
    return _report(ReportId.PDU, device.serial, {ReportKey.FEEDS: feeds})


def poll_cdu(device: Device) -> dict:
    unit = device.get(wire.CDU_PATH)
    oem = (unit.get("Oem") or {}).get(OEM, {})
    return _report(
        ReportId.CDU,
        device.serial,
        {key: oem.get(key) for key in (ReportKey.SUPPLY_TEMPERATURE, ReportKey.HEAT_LOAD)},
    )


POLLERS: dict[str, Callable[[Device], dict]] = {
    wire.DeviceKind.BMC: poll_bmc,
    wire.DeviceKind.PDU: poll_pdu,
    wire.DeviceKind.CDU: poll_cdu,
}
