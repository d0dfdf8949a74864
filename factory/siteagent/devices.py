"""The site's devices as the agent reaches them: DMTF's ``redfish`` client, at most
``MAX_CONNECTIONS`` requests at a time to any one BMC (BMCs are small computers)."""

from __future__ import annotations

import datetime as dt
import queue
import threading
from contextlib import contextmanager

import redfish

MAX_CONNECTIONS = 4
SYSTEM = "/redfish/v1/Systems/UltraServer"
OEM = "AIFactory"


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
        **extra,
    ):
        self.kind = kind
        self.serial = serial
        self.url = url
        self.username = username
        self.password = password
        self.timeout = timeout
        self.extra = extra
        self._idle: queue.LifoQueue = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    @contextmanager
    def client(self):
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


def _report(report_id: str, source: str, oem: dict, stamp: str | None = None) -> dict:
    return {
        "@odata.type": "#MetricReport.v1_5_2.MetricReport",
        "Id": report_id,
        "Timestamp": stamp or now_iso(),
        "MetricValues": [],
        "Oem": {OEM: {"Source": source, **oem}},
    }


def _number(text: str) -> int | float:
    """Redfish MetricValue is a string: counters as integers, the rest as floats."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def poll_bmc(device: Device) -> dict:
    """The BMC's per-chip MetricReport, turned into one list per metric."""
    report = device.get("/redfish/v1/TelemetryService/MetricReports/ChipMetrics")
    columns: dict[str, list] = {}
    for value in report.get("MetricValues", []):
        prop = value.get("MetricProperty", "")
        index = int(prop.split("/Processors/Chip", 1)[1].split("/", 1)[0])
        column = columns.setdefault(value["MetricId"], [])
        if len(column) <= index:
            column.extend([0] * (index + 1 - len(column)))
        column[index] = _number(value["MetricValue"])
    for metric in (
        "power_w",
        "energy_j",
        "temp_c",
        "utilization",
        "hbm_used_gb",
        "link_down_s",
        "throttle_s",
    ):
        if metric in columns:
            columns[metric] = [float(v) for v in columns[metric]]
    return _report("ChipMetrics", device.serial, {"Chips": columns}, report.get("Timestamp"))


def poll_pdu(device: Device) -> dict:
    feeds = {}
    collection = device.get("/redfish/v1/PowerEquipment/RackPDUs")
    for member in collection.get("Members", []):
        unit = device.get(member["@odata.id"])
        mains = device.get(f"{member['@odata.id']}/Mains/AC1")
        feeds[unit["Id"]] = {
            "power_w": float((mains.get("PowerWatts") or {}).get("Reading") or 0.0),
            "up": mains.get("PowerState") == "On",
        }
    return _report("PduMetrics", device.serial, {"Feeds": feeds})


def poll_cdu(device: Device) -> dict:
    unit = device.get("/redfish/v1/ThermalEquipment/CDUs/1")
    oem = (unit.get("Oem") or {}).get(OEM, {})
    return _report(
        "CduMetrics",
        device.serial,
        {
            "SupplyTemperatureCelsius": oem.get("SupplyTemperatureCelsius"),
            "HeatLoadWatts": oem.get("HeatLoadWatts"),
        },
    )


POLLERS = {"bmc": poll_bmc, "pdu": poll_pdu, "cdu": poll_cdu}
