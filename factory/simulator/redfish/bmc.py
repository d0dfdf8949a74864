"""A simulated UltraServer's BMC: the system, its accelerators and HBM, chassis power, firmware
banks, tasks and the per-chip MetricReport. Long operations (SimpleUpdate, burn-in) answer 202
with a Task to poll, as real BMCs do."""

from __future__ import annotations

from factory import wire
from factory.simulator.devices import Bmc, Site, Task
from factory.simulator.hardware import HEALTH_NAMES
from factory.simulator.redfish.common import (
    ROOT,
    HttpError,
    Tree,
    collection,
    link,
    now_iso,
    resource,
    service,
    service_root,
    status,
)
from factory.wire import OEM, Metric, OemAction, SystemOem

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


class BmcTree(Tree):
    def __init__(self, site: Site, bmc: Bmc):
        self.bmc = bmc
        self.name = bmc.serial
        super().__init__(site, bmc.flavour)

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
            return collection(path, "ComputerSystemCollection", "Systems", [SYSTEM])
        if path == f"{ROOT}/Chassis":
            return collection(path, "ChassisCollection", "Chassis", [CHASSIS])
        if path == SYSTEM:
            return self.system()
        if path == CHASSIS:
            return resource(
                path,
                "Chassis.v1_28_0.Chassis",
                "UltraServer",
                f"UltraServer {bmc.serial}",
                ChassisType="RackMount",
                SerialNumber=bmc.serial,
                Model=bmc.spec.family,
                PowerState="On" if bmc.powered else "Off",
                Status=status(),
                PowerSubsystem=link(f"{path}/PowerSubsystem"),
                Links={"ComputerSystems": [link(SYSTEM)]},
            )
        if path == f"{CHASSIS}/PowerSubsystem":
            return resource(
                path,
                "PowerSubsystem.v1_1_3.PowerSubsystem",
                "PowerSubsystem",
                "Power",
                Status=status(),
                CapacityWatts=float(bmc.spec.overhead_w + bmc.spec.chips * bmc.spec.chip_max_w),
                Allocation={"AllocatedWatts": round(bmc.power_w, 1)},
            )
        if path == f"{SYSTEM}/Processors":
            return collection(
                path,
                "ProcessorCollection",
                "Accelerators",
                [wire.chip_path(c.index) for c in bmc.chips],
            )
        if path == f"{SYSTEM}/Memory":
            return collection(
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
        return resource(
            SYSTEM,
            "ComputerSystem.v1_27_0.ComputerSystem",
            "UltraServer",
            f"UltraServer {bmc.serial}",
            SystemType="Physical",
            SerialNumber=bmc.serial,
            Model=bmc.spec.family,
            PowerState="On" if bmc.powered else "Off",
            Status=status("Critical" if failed else "OK"),
            BiosVersion=bmc.firmware_active,
            ProcessorSummary={"Count": len(bmc.chips)},
            Processors=link(f"{SYSTEM}/Processors"),
            Memory=link(f"{SYSTEM}/Memory"),
            Links={"Chassis": [link(CHASSIS)]},
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
            return resource(
                base,
                "Processor.v1_22_0.Processor",
                f"Chip{index}",
                f"Accelerator {index}",
                ProcessorType=spec.processor_type,
                Model=spec.family,
                SerialNumber=f"{self.bmc.serial}-C{index:03d}",
                Status=status(HEALTH_NAMES[chip.health]),
                EnvironmentMetrics=link(f"{base}/EnvironmentMetrics"),
                Ports=link(f"{base}/Ports"),
                Links={"Memory": [link(f"{SYSTEM}/Memory/HBM{index}")]},
            )
        if tail == "EnvironmentMetrics":
            return resource(
                f"{base}/{tail}",
                "EnvironmentMetrics.v1_5_0.EnvironmentMetrics",
                "EnvironmentMetrics",
                f"Accelerator {index} environment",
                TemperatureCelsius={"Reading": round(chip.temp_c, 2)},
                PowerWatts={"Reading": round(chip.power_w, 1)},
                EnergyJoules={"Reading": round(chip.energy_j, 1)},
            )
        if tail == "Ports":
            return collection(
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
            return resource(
                f"{base}/{tail}",
                "Port.v1_18_0.Port",
                f"Link{n}",
                f"Chip link {n}",
                PortType="InterswitchPort",
                LinkStatus="LinkUp" if up else "LinkDown",
                LinkState="Enabled",
                Status=status("OK" if up else "Warning"),
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
            return resource(
                base,
                "Memory.v1_23_0.Memory",
                f"HBM{index}",
                f"HBM of accelerator {index}",
                MemoryType="DRAM",
                MemoryDeviceType="HBM3",
                CapacityMiB=int(spec.hbm_gb * 1024),
                Status=status("Critical" if chip.ecc_uncorrected else "OK"),
                Metrics=link(f"{base}/MemoryMetrics"),
            )
        if tail == "MemoryMetrics":
            return resource(
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
            return service(
                path,
                "UpdateService.v1_17_0.UpdateService",
                "Update Service",
                FirmwareInventory=link(f"{base}/FirmwareInventory"),
                Actions={
                    "#UpdateService.SimpleUpdate": {
                        "target": f"{base}/Actions/UpdateService.SimpleUpdate",
                        "TransferProtocol@Redfish.AllowableValues": ["HTTPS"],
                    }
                },
            )
        if path == f"{base}/FirmwareInventory":
            members = [f"{path}/Active"] + ([f"{path}/Inactive"] if bmc.firmware_inactive else [])
            return collection(path, "SoftwareInventoryCollection", "Firmware", members)
        for bank, version in (("Active", bmc.firmware_active), ("Inactive", bmc.firmware_inactive)):
            if path == f"{base}/FirmwareInventory/{bank}" and version:
                return resource(
                    path,
                    "SoftwareInventory.v1_13_0.SoftwareInventory",
                    bank,
                    f"{bank} firmware bank",
                    Version=version,
                    Updateable=True,
                    Status=status(state="Enabled" if bank == "Active" else "StandbySpare"),
                )
        return None

    def task_resource(self, path: str) -> dict | None:
        base = f"{ROOT}/TaskService"
        if path == base:
            return service(
                path, "TaskService.v1_3_0.TaskService", "Task Service", Tasks=link(f"{base}/Tasks")
            )
        if path == f"{base}/Tasks":
            return collection(
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
        body = resource(
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
            return service(
                path,
                "TelemetryService.v1_4_1.TelemetryService",
                "Telemetry Service",
                MetricReports=link(f"{base}/MetricReports"),
            )
        if path == f"{base}/MetricReports":
            return collection(
                path, "MetricReportCollection", "Metric reports", [f"{path}/{REPORT_ID}"]
            )
        if path == f"{base}/MetricReports/{REPORT_ID}":
            return self.metric_report(path)
        return None

    def metric_report(self, path: str) -> dict:
        """Every chip's sample in one report: what the agent polls, one GET per BMC."""
        stamp = now_iso()
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
        return resource(
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
