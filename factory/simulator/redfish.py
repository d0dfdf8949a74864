"""The Redfish subset each simulated device serves, as plain dicts by URI.

Types and versions are those of DMTF's 2025.4 schema bundle (``../shared/redfish/csdl``), which
``redfish_service_validator`` checks them against. Long operations (SimpleUpdate, burn-in)
answer 202 with a Task to poll, as real BMCs do.
"""

from __future__ import annotations

import datetime as dt
import uuid

from factory import wire
from factory.simulator.devices import Bmc, Cdu, RackPdu, Site, Task
from factory.simulator.hardware import HEALTH_NAMES
from factory.wire import OEM, Metric, OemAction, ReportKey, SystemOem

ROOT = wire.REDFISH_ROOT
SYSTEM = wire.SYSTEM_PATH
CHASSIS = f"{ROOT}/Chassis/UltraServer"
REPORT_ID = wire.ReportId.CHIPS.value
# OEM (factory.wire): our namespace for what Redfish has no standard for (drain, burn-in).

# Where each per-chip metric lives in the standard tree (MetricReport.MetricProperty).
METRIC_PROPERTY = {
    Metric.POWER_W: "EnvironmentMetrics#/PowerWatts/Reading",
    Metric.ENERGY_J: "EnvironmentMetrics#/EnergyJoules/Reading",
    Metric.TEMP_C: "EnvironmentMetrics#/TemperatureCelsius/Reading",
    Metric.UTILIZATION: "ProcessorMetrics#/BandwidthPercent",
    Metric.HBM_USED_GB: "MemoryMetrics#/CapacityUtilizationPercent",
    Metric.ECC_CORRECTED: "MemoryMetrics#/LifeTime/CorrectableECCErrorCount",
    Metric.ECC_UNCORRECTED: "MemoryMetrics#/LifeTime/UncorrectableECCErrorCount",
    Metric.LINK_ERRORS: "Ports#/Metrics/RXErrors",
    Metric.LINK_DOWN_S: f"Ports#/Oem/{OEM}/LinkDownSeconds",
    Metric.THROTTLE_S: "ProcessorMetrics#/ThrottleDurationSeconds",
    Metric.HEALTH: "#/Status/Health",
}


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(message: str) -> dict:
    return {
        "error": {
            "code": "Base.1.0.GeneralError",
            "message": message,
            "@Message.ExtendedInfo": [],
        }
    }


def _link(path: str) -> dict:
    return {"@odata.id": path}


def _now_iso() -> str:
    # Milliseconds: two samples a second apart can fall in the same wall-clock second.
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _collection(path: str, type_name: str, name: str, members: list[str]) -> dict:
    return {
        "@odata.id": path,
        "@odata.type": f"#{type_name}.{type_name}",
        "Name": name,
        "Members@odata.count": len(members),
        "Members": [_link(m) for m in members],
    }


def _resource(path: str, type_: str, id_: str, name: str, **fields: object) -> dict:
    return {"@odata.id": path, "@odata.type": f"#{type_}", "Id": id_, "Name": name, **fields}


def _status(health: str = "OK", state: str = "Enabled") -> dict:
    return {"State": state, "Health": health}


def _service(path: str, type_: str, name: str, **fields: object) -> dict:
    """A BMC service resource (update, task, telemetry): enabled and healthy."""
    id_ = type_.rsplit(".", 1)[-1]
    return _resource(path, type_, id_, name, ServiceEnabled=True, Status=_status(), **fields)


def service_root(device_uuid: str, **links: str) -> dict:
    return _resource(
        ROOT,
        "ServiceRoot.v1_20_0.ServiceRoot",
        "RootService",
        "Root Service",
        RedfishVersion="1.21.0",
        UUID=device_uuid,
        SessionService=_link(f"{ROOT}/SessionService"),
        Links={"Sessions": _link(f"{ROOT}/SessionService/Sessions")},
        **{name: _link(f"{ROOT}/{target}") for name, target in links.items()},
    )


def session_resource(path: str) -> dict | None:
    """Basic authentication only: the session service exists (Redfish requires the link) and
    holds no sessions."""
    if path == f"{ROOT}/SessionService":
        return _resource(
            path,
            "SessionService.v1_2_0.SessionService",
            "SessionService",
            "Session Service",
            ServiceEnabled=False,
            SessionTimeout=600,
            Status=_status(state="Disabled"),
            Sessions=_link(f"{path}/Sessions"),
        )
    if path == f"{ROOT}/SessionService/Sessions":
        return _collection(path, "SessionCollection", "Sessions", [])
    return None


class Tree:
    """A device's resources; subclasses map URIs to payloads and handle actions."""

    def __init__(self, site: Site):
        self.site = site
        self.uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"factory-sim:{self.name}"))

    name = "device"

    def get(self, path: str) -> dict:
        path = path.rstrip("/") or "/"
        if path in ("/redfish", "/redfish/"):
            return {"v1": f"{ROOT}/"}
        with self.site.lock:
            body = session_resource(path) or self.resource(path)
        if body is None:
            raise HttpError(404, f"no resource at {path}")
        return body

    def resource(self, path: str) -> dict | None:
        raise NotImplementedError

    def post(self, path: str, body: dict) -> tuple[int, dict, dict]:
        raise HttpError(405, f"no action at {path}")


class BmcTree(Tree):
    def __init__(self, site: Site, bmc: Bmc):
        self.bmc = bmc
        self.name = bmc.serial
        super().__init__(site)

    # --- GET ---------------------------------------------------------------------------------

    def resource(self, path: str) -> dict | None:
        bmc = self.bmc
        if path == ROOT:
            return service_root(
                self.uuid,
                Systems="Systems",
                Chassis="Chassis",
                UpdateService="UpdateService",
                Tasks="TaskService",
                TelemetryService="TelemetryService",
            )
        if path == f"{ROOT}/Systems":
            return _collection(path, "ComputerSystemCollection", "Systems", [SYSTEM])
        if path == f"{ROOT}/Chassis":
            return _collection(path, "ChassisCollection", "Chassis", [CHASSIS])
        if path == SYSTEM:
            return self.system()
        if path == CHASSIS:
            return _resource(
                path,
                "Chassis.v1_28_0.Chassis",
                "UltraServer",
                f"UltraServer {bmc.serial}",
                ChassisType="RackMount",
                SerialNumber=bmc.serial,
                Model=bmc.spec.family,
                PowerState="On" if bmc.powered else "Off",
                Status=_status(),
                PowerSubsystem=_link(f"{path}/PowerSubsystem"),
                Links={"ComputerSystems": [_link(SYSTEM)]},
            )
        if path == f"{CHASSIS}/PowerSubsystem":
            return _resource(
                path,
                "PowerSubsystem.v1_1_3.PowerSubsystem",
                "PowerSubsystem",
                "Power",
                Status=_status(),
                CapacityWatts=float(bmc.spec.overhead_w + bmc.spec.chips * bmc.spec.chip_max_w),
                Allocation={"AllocatedWatts": round(bmc.power_w, 1)},
            )
        if path == f"{SYSTEM}/Processors":
            return _collection(
                path,
                "ProcessorCollection",
                "Accelerators",
                [wire.chip_path(c.index) for c in bmc.chips],
            )
        if path == f"{SYSTEM}/Memory":
            return _collection(
                path, "MemoryCollection", "HBM", [f"{path}/HBM{c.index}" for c in bmc.chips]
            )
        if path.startswith(wire.CHIP_PREFIX):
            return self.chip_resource(path)
        if path.startswith(f"{SYSTEM}/Memory/HBM"):
            return self.memory_resource(path)
        if path.startswith(f"{ROOT}/UpdateService"):
            return self.update_resource(path)
        if path.startswith(f"{ROOT}/TaskService"):
            return self.task_resource(path)
        if path.startswith(f"{ROOT}/TelemetryService"):
            return self.telemetry_resource(path)
        return None

    def system(self) -> dict:
        bmc = self.bmc
        failed = sum(1 for c in bmc.chips if c.health == 2)
        return _resource(
            SYSTEM,
            "ComputerSystem.v1_27_0.ComputerSystem",
            "UltraServer",
            f"UltraServer {bmc.serial}",
            SystemType="Physical",
            SerialNumber=bmc.serial,
            Model=bmc.spec.family,
            PowerState="On" if bmc.powered else "Off",
            Status=_status("Critical" if failed else "OK"),
            BiosVersion=bmc.firmware_active,
            ProcessorSummary={"Count": len(bmc.chips)},
            Processors=_link(f"{SYSTEM}/Processors"),
            Memory=_link(f"{SYSTEM}/Memory"),
            Links={"Chassis": [_link(CHASSIS)]},
            Actions={
                "#ComputerSystem.Reset": {
                    "target": f"{SYSTEM}/Actions/ComputerSystem.Reset",
                    "ResetType@Redfish.AllowableValues": [
                        "On",
                        "ForceOff",
                        "GracefulShutdown",
                        "ForceRestart",
                        "GracefulRestart",
                    ],
                },
                "Oem": {
                    f"#{OEM}.{action}": {"target": wire.oem_action_path(action)}
                    for action in OemAction
                },
            },
            Oem={
                OEM: {
                    SystemOem.DRAINED: bmc.drained,
                    SystemOem.CABLED: bmc.cabled,
                    SystemOem.INACTIVE_FIRMWARE_VERSION: bmc.firmware_inactive,
                }
            },
        )

    def _chip(self, path: str, prefix: str) -> tuple[int, str] | None:
        rest = path[len(prefix) :]
        index, _, tail = rest.partition("/")
        if not index.isdigit() or int(index) >= len(self.bmc.chips):
            return None
        return int(index), tail

    def chip_resource(self, path: str) -> dict | None:
        found = self._chip(path, wire.CHIP_PREFIX)
        if found is None:
            return None
        index, tail = found
        chip, spec = self.bmc.chips[index], self.bmc.spec
        base = wire.chip_path(index)
        if tail == "":
            return _resource(
                base,
                "Processor.v1_22_0.Processor",
                f"Chip{index}",
                f"Accelerator {index}",
                ProcessorType=spec.processor_type,
                Model=spec.family,
                SerialNumber=f"{self.bmc.serial}-C{index:03d}",
                Status=_status(HEALTH_NAMES[chip.health]),
                EnvironmentMetrics=_link(f"{base}/EnvironmentMetrics"),
                Ports=_link(f"{base}/Ports"),
                Links={"Memory": [_link(f"{SYSTEM}/Memory/HBM{index}")]},
            )
        if tail == "EnvironmentMetrics":
            return _resource(
                f"{base}/{tail}",
                "EnvironmentMetrics.v1_5_0.EnvironmentMetrics",
                "EnvironmentMetrics",
                f"Accelerator {index} environment",
                TemperatureCelsius={"Reading": round(chip.temp_c, 2)},
                PowerWatts={"Reading": round(chip.power_w, 1)},
                EnergyJoules={"Reading": round(chip.energy_j, 1)},
            )
        if tail == "Ports":
            return _collection(
                f"{base}/Ports",
                "PortCollection",
                "Links",
                [f"{base}/Ports/Link{n}" for n in range(spec.links_per_chip)],
            )
        if tail.startswith("Ports/Link") and tail[10:].isdigit():
            n = int(tail[10:])
            if n >= spec.links_per_chip:
                return None
            up = chip.links_down_until[n] <= self.site.now
            return _resource(
                f"{base}/{tail}",
                "Port.v1_18_0.Port",
                f"Link{n}",
                f"Chip link {n}",
                PortType="InterswitchPort",
                LinkStatus="LinkUp" if up else "LinkDown",
                LinkState="Enabled",
                Status=_status("OK" if up else "Warning"),
            )
        return None

    def memory_resource(self, path: str) -> dict | None:
        found = self._chip(path, f"{SYSTEM}/Memory/HBM")
        if found is None:
            return None
        index, tail = found
        chip, spec = self.bmc.chips[index], self.bmc.spec
        base = f"{SYSTEM}/Memory/HBM{index}"
        if tail == "":
            return _resource(
                base,
                "Memory.v1_23_0.Memory",
                f"HBM{index}",
                f"HBM of accelerator {index}",
                MemoryType="DRAM",
                MemoryDeviceType="HBM3",
                CapacityMiB=int(spec.hbm_gb * 1024),
                Status=_status("Critical" if chip.ecc_uncorrected else "OK"),
                Metrics=_link(f"{base}/MemoryMetrics"),
            )
        if tail == "MemoryMetrics":
            return _resource(
                f"{base}/{tail}",
                "MemoryMetrics.v1_8_0.MemoryMetrics",
                "MemoryMetrics",
                f"HBM {index} metrics",
                CapacityUtilizationPercent=int(100 * chip.hbm_used_gb / spec.hbm_gb),
                LifeTime={
                    "CorrectableECCErrorCount": chip.ecc_corrected,
                    "UncorrectableECCErrorCount": chip.ecc_uncorrected,
                },
            )
        return None

    def update_resource(self, path: str) -> dict | None:
        bmc = self.bmc
        base = f"{ROOT}/UpdateService"
        if path == base:
            return _service(
                path,
                "UpdateService.v1_17_0.UpdateService",
                "Update Service",
                FirmwareInventory=_link(f"{base}/FirmwareInventory"),
                Actions={
                    "#UpdateService.SimpleUpdate": {
                        "target": f"{base}/Actions/UpdateService.SimpleUpdate",
                        "TransferProtocol@Redfish.AllowableValues": ["HTTPS"],
                    }
                },
            )
        if path == f"{base}/FirmwareInventory":
            members = [f"{path}/Active"] + ([f"{path}/Inactive"] if bmc.firmware_inactive else [])
            return _collection(path, "SoftwareInventoryCollection", "Firmware", members)
        for bank, version in (("Active", bmc.firmware_active), ("Inactive", bmc.firmware_inactive)):
            if path == f"{base}/FirmwareInventory/{bank}" and version:
                return _resource(
                    path,
                    "SoftwareInventory.v1_13_0.SoftwareInventory",
                    bank,
                    f"{bank} firmware bank",
                    Version=version,
                    Updateable=True,
                    Status=_status(state="Enabled" if bank == "Active" else "StandbySpare"),
                )
        return None

    def task_resource(self, path: str) -> dict | None:
        base = f"{ROOT}/TaskService"
        if path == base:
            return _service(
                path, "TaskService.v1_3_0.TaskService", "Task Service", Tasks=_link(f"{base}/Tasks")
            )
        if path == f"{base}/Tasks":
            return _collection(
                path, "TaskCollection", "Tasks", [f"{path}/{t}" for t in self.bmc.tasks]
            )
        task = self.bmc.tasks.get(path.rsplit("/", 1)[-1])
        if task is None or not path.startswith(f"{base}/Tasks/"):
            return None
        return self._task_body(path, task)

    def _task_body(self, path: str, task: Task) -> dict:
        if not task.finished:
            state, status = "Running", "OK"
        else:
            state, status = ("Completed", "OK") if task.ok else ("Exception", "Critical")
        body = _resource(
            path,
            "Task.v1_7_4.Task",
            task.id,
            task.name,
            TaskState=state,
            TaskStatus=status,
            PercentComplete=100 if task.finished else 50,
            Messages=[
                {
                    "MessageId": "Base.1.0.Success" if task.ok else "Base.1.0.GeneralError",
                    "Message": task.message,
                }
            ]
            if task.finished
            else [],
        )
        if task.finished and task.result:
            body["Oem"] = {OEM: task.result}
        return body

    def telemetry_resource(self, path: str) -> dict | None:
        base = f"{ROOT}/TelemetryService"
        if path == base:
            return _service(
                path,
                "TelemetryService.v1_4_1.TelemetryService",
                "Telemetry Service",
                MetricReports=_link(f"{base}/MetricReports"),
            )
        if path == f"{base}/MetricReports":
            return _collection(
                path, "MetricReportCollection", "Metric reports", [f"{path}/{REPORT_ID}"]
            )
        if path == f"{base}/MetricReports/{REPORT_ID}":
            return self.metric_report(path)
        return None

    def metric_report(self, path: str) -> dict:
        """Every chip's sample in one report: what the agent polls, one GET per BMC."""
        stamp = _now_iso()
        values = []
        for chip in self.bmc.chips:
            prefix = wire.chip_path(chip.index)
            for metric, value in chip.metrics().items():
                values.append(
                    {
                        "MetricId": metric,
                        "MetricValue": str(value),
                        "Timestamp": stamp,
                        "MetricProperty": f"{prefix}/{METRIC_PROPERTY[metric]}",
                    }
                )
        return _resource(
            path,
            "MetricReport.v1_5_2.MetricReport",
            REPORT_ID,
            "Per-chip metrics",
            Timestamp=stamp,
            MetricValues=values,
        )

    # --- POST (actions) ----------------------------------------------------------------------

    def post(self, path: str, body: dict) -> tuple[int, dict, dict]:
        bmc, now = self.bmc, self.site.now
        with self.site.lock:
            if path == wire.SIMPLE_UPDATE_PATH:
                image = body.get("ImageURI")
                if not isinstance(image, str) or not image:
                    raise HttpError(400, "ImageURI is required")
                task = bmc.simple_update(image, now)
                return self._accepted(task)
            if path == wire.RESET_PATH:
                reset_type = body.get("ResetType", "ForceRestart")
                if reset_type not in (
                    "On",
                    "ForceOff",
                    "GracefulShutdown",
                    "ForceRestart",
                    "GracefulRestart",
                ):
                    raise HttpError(400, f"ResetType {reset_type!r} is not supported")
                bmc.reset(reset_type)
                return 204, {}, {}
            drains = {
                wire.oem_action_path(OemAction.DRAIN): True,
                wire.oem_action_path(OemAction.UNDRAIN): False,
            }
            if path in drains:
                bmc.drained = drains[path]
                return 200, bmc.state(), {}
            if path == wire.oem_action_path(OemAction.ACTIVATE_BANK):
                if not bmc.activate_bank(str(body.get(wire.ACTIVATE_BANK_VERSION, ""))):
                    raise HttpError(409, "no firmware bank holds that version")
                return 200, bmc.state(), {}
            if path == wire.oem_action_path(OemAction.BURN_IN):
                return self._accepted(bmc.burn_in(now))
        raise HttpError(404, f"no action at {path}")

    def _accepted(self, task: Task) -> tuple[int, dict, dict]:
        location = f"{ROOT}/TaskService/Tasks/{task.id}"
        return 202, self._task_body(location, task), {"Location": location}


class PduTree(Tree):
    """A rack's PDUs: one PowerDistribution per feed path, each with its mains circuit."""

    def __init__(self, site: Site, pdu: RackPdu):
        self.pdu = pdu
        self.name = pdu.serial
        super().__init__(site)

    def resource(self, path: str) -> dict | None:
        pdu, now = self.pdu, self.site.now
        base = f"{ROOT}/PowerEquipment"
        if path == ROOT:
            return service_root(self.uuid, PowerEquipment="PowerEquipment")
        if path == base:
            return _resource(
                path,
                "PowerEquipment.v1_2_3.PowerEquipment",
                "PowerEquipment",
                "Power equipment",
                Status=_status(),
                RackPDUs=_link(wire.RACK_PDUS_PATH),
            )
        if path == wire.RACK_PDUS_PATH:
            return _collection(
                path,
                "PowerDistributionCollection",
                "Rack PDUs",
                [f"{path}/{feed}" for feed in pdu.feeds],
            )
        for feed in pdu.feeds:
            unit = f"{wire.RACK_PDUS_PATH}/{feed}"
            up = pdu.feed_up(feed, now)
            if path == unit:
                return _resource(
                    path,
                    "PowerDistribution.v1_6_0.PowerDistribution",
                    feed,
                    f"Rack PDU {feed}",
                    EquipmentType="RackPDU",
                    Model="Simulated PDU",
                    SerialNumber=f"{pdu.serial}-{feed}",
                    Status=_status("OK" if up else "Critical"),
                    Mains=_link(f"{unit}/Mains"),
                    Metrics=_link(f"{unit}/Metrics"),
                )
            if path == f"{unit}/Mains":
                return _collection(path, "CircuitCollection", "Mains", [f"{unit}/{wire.PDU_MAINS}"])
            if path == f"{unit}/{wire.PDU_MAINS}":
                return _resource(
                    path,
                    "Circuit.v1_9_0.Circuit",
                    "AC1",
                    f"Mains of {feed}",
                    CircuitType="Mains",
                    PhaseWiringType="ThreePhase5Wire",
                    NominalVoltage="AC400V",
                    PowerState="On" if up else "Off",
                    Status=_status("OK" if up else "Critical"),
                    PowerWatts={"Reading": round(pdu.load_w[feed], 1)},
                    Voltage={"Reading": pdu.voltage if up else 0.0},
                )
            if path == f"{unit}/Metrics":
                return _resource(
                    path,
                    "PowerDistributionMetrics.v1_4_0.PowerDistributionMetrics",
                    "Metrics",
                    f"Metrics of {feed}",
                    PowerWatts={"Reading": round(pdu.load_w[feed], 1)},
                    EnergykWh={"Reading": round(pdu.energy_j[feed] / 3.6e6, 3)},
                )
        return None


class CduTree(Tree):
    """The site's coolant distribution unit (ThermalEquipment/CDUs)."""

    def __init__(self, site: Site, cdu: Cdu):
        self.cdu = cdu
        self.name = cdu.serial
        super().__init__(site)

    def resource(self, path: str) -> dict | None:
        cdu = self.cdu
        base = f"{ROOT}/ThermalEquipment"
        if path == ROOT:
            return service_root(self.uuid, ThermalEquipment="ThermalEquipment")
        if path == base:
            return _resource(
                path,
                "ThermalEquipment.v1_2_0.ThermalEquipment",
                "ThermalEquipment",
                "Thermal equipment",
                Status=_status(),
                CDUs=_link(f"{base}/CDUs"),
            )
        if path == f"{base}/CDUs":
            return _collection(path, "CoolingUnitCollection", "CDUs", [wire.CDU_PATH])
        if path == wire.CDU_PATH:
            hot = cdu.supply_c > cdu.nominal_c + 5
            return _resource(
                path,
                "CoolingUnit.v1_5_0.CoolingUnit",
                "1",
                f"CDU {cdu.serial}",
                EquipmentType="CDU",
                Status=_status("Warning" if hot else "OK"),
                CoolingCapacityWatts=2_000_000,
                Oem={
                    OEM: {
                        ReportKey.SUPPLY_TEMPERATURE: round(cdu.supply_c, 2),
                        ReportKey.HEAT_LOAD: round(cdu.heat_w, 1),
                    }
                },
            )
        return None
