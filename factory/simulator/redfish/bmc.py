"""A simulated UltraServer's BMC: the system, its accelerators and HBM; the chassis with its
trays, sensors, cooling loop, leak detectors and power shelf; firmware per component with the
system firmware's A/B banks; tasks and the per-chip MetricReport. Long operations
(SimpleUpdate, burn-in) answer 202 with a Task to poll, as real BMCs do.

The trays are chassis of their own inside the UltraServer's (``Links.Contains`` /
``ContainedBy``), as DSP0268 models a multi-chassis system: a leak detector belongs to the tray
that houses it and a firmware entry names the trays it runs on. The readings stay in the
UltraServer chassis (its ``Sensors``, ``ThermalSubsystem``, ``PowerSubsystem``,
``EnvironmentMetrics``), so one walk of one chassis reads them all; a tray chassis carries only
its status, links and detectors, which keeps DMTF's service validator's walk short.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from factory import wire
from factory.simulator.devices import Bmc, Site, Task
from factory.simulator.faults import Fault
from factory.simulator.hardware import (
    HEALTH_DEGRADED,
    HEALTH_FAILED,
    HEALTH_NAMES,
    HEALTH_OK,
    PSU_EFFICIENCY,
    PSU_RATED_W,
    THROTTLE_AT_C,
    coolant_outlet_c,
)
from factory.simulator.redfish import tasks
from factory.simulator.redfish.common import (
    ROOT,
    HttpError,
    Tree,
    Upload,
    collection,
    link,
    now_iso,
    resource,
    service,
    service_root,
    status,
)
from factory.wire import OEM, EventKind, FirmwareComponent, Metric, OemAction, SystemOem

SYSTEM = wire.SYSTEM_PATH
CHASSIS = f"{ROOT}/Chassis/UltraServer"
REPORT_ID = wire.ReportId.CHIPS.value
INVENTORY = f"{ROOT}/UpdateService/FirmwareInventory"
#: UpdateService ``MaxImageSizeBytes``: the largest image a push update takes.
MAX_IMAGE_BYTES = 256 * 1024 * 1024
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

RESET_TYPES = ("On", "ForceOff", "GracefulShutdown", "ForceRestart", "GracefulRestart")
TRAY_RESET_TYPES = ("On", "ForceOff")
# Sensor thresholds (°C): a chip throttles at THROTTLE_AT_C, so its tray warns before that;
# HARDWARE.md gives the secondary loop's supply as 25-45 °C.
TRAY_CAUTION_C, TRAY_CRITICAL_C = THROTTLE_AT_C - 5, THROTTLE_AT_C + 5
SUPPLY_CAUTION_C, SUPPLY_CRITICAL_C = 45.0, 50.0


@dataclass(frozen=True)
class Naming:
    """A vendor's Ids: where its resources live and what its firmware entries are called.

    (Kept here rather than in ``flavours.Flavour`` because only the BMC needs them.) A flavour
    other than the factory's serves its own System and Chassis Ids, so an agent must find them
    from the collections, as it would on a real BMC."""

    system: str
    chassis: str
    tray: str  # an accelerator tray's chassis Id; ``{n}`` from 0
    switch_tray: str
    power_shelf: str
    power_supply: str
    leak_detector: str  # the cold-plate group's detector in each tray
    #: SoftwareInventory Ids by FirmwareComponent, and that of the system firmware's standby bank.
    inventory: Mapping[str, str]
    inactive_bios: str
    #: SoftwareInventory Names by FirmwareComponent (what ``rf_firmware_inventory.py`` lists).
    inventory_names: Mapping[str, str]
    #: SoftwareId as a GUID (as many vendors have it), not a readable name.
    guid_software_ids: bool = False


FACTORY_NAMING = Naming(
    system=SYSTEM.rsplit("/", 1)[-1],
    chassis=CHASSIS.rsplit("/", 1)[-1],
    tray="Tray{n}",
    switch_tray="SwitchTray{n}",
    power_shelf="PowerShelf",
    power_supply="PSU{n}",
    leak_detector="ColdPlate",
    inventory={
        FirmwareComponent.BMC: "BMC",
        FirmwareComponent.BIOS: "BIOS",
        FirmwareComponent.NIC: "NIC",
        FirmwareComponent.ACCELERATOR_TRAY: "AcceleratorTray",
        FirmwareComponent.SWITCH_TRAY: "SwitchTray",
        FirmwareComponent.POWER_SHELF: "PowerShelf",
    },
    inactive_bios="BIOSInactive",
    inventory_names={
        FirmwareComponent.BMC: "BMC firmware",
        FirmwareComponent.BIOS: "System firmware (BIOS)",
        FirmwareComponent.NIC: "NIC firmware",
        FirmwareComponent.ACCELERATOR_TRAY: "Accelerator tray firmware",
        FirmwareComponent.SWITCH_TRAY: "Switch tray firmware",
        FirmwareComponent.POWER_SHELF: "Power shelf firmware",
    },
)

NAMINGS: dict[str, Naming] = {
    "factory": FACTORY_NAMING,
    "contoso": Naming(
        system="Node1",
        chassis="Enclosure1",
        tray="Sled{n}",
        switch_tray="FabricSwitch{n}",
        power_shelf="PowerShelf1",
        power_supply="PSU_{n}",
        leak_detector="Manifold",
        inventory={
            FirmwareComponent.BMC: "BMC_FW",
            FirmwareComponent.BIOS: "UEFI",
            FirmwareComponent.NIC: "NIC_FW",
            FirmwareComponent.ACCELERATOR_TRAY: "AcceleratorSled_FW",
            FirmwareComponent.SWITCH_TRAY: "FabricSwitch_FW",
            FirmwareComponent.POWER_SHELF: "PSU_FW",
        },
        inactive_bios="UEFI_Backup",
        inventory_names={
            FirmwareComponent.BMC: "Contoso BMC",
            FirmwareComponent.BIOS: "Contoso UEFI",
            FirmwareComponent.NIC: "Contoso network adapter",
            FirmwareComponent.ACCELERATOR_TRAY: "Contoso accelerator sled",
            FirmwareComponent.SWITCH_TRAY: "Contoso fabric switch",
            FirmwareComponent.POWER_SHELF: "Contoso PSU shelf",
        },
        guid_software_ids=True,
    ),
}


class BmcTree(Tree):
    """One UltraServer's BMC as its flavour serves it. Other services (events, logs, tasks)
    ask ``system_path``/``chassis_path`` and ``origin_of`` rather than assume the factory's
    paths."""

    def __init__(self, site: Site, bmc: Bmc):
        self.bmc = bmc
        self.name = bmc.serial
        self.naming = NAMINGS.get(bmc.flavour.name, FACTORY_NAMING)
        naming = self.naming
        #: Where this BMC serves its system and chassis (the factory flavour: ``wire``'s).
        self.system_path = f"{ROOT}/Systems/{naming.system}"
        self.chassis_path = f"{ROOT}/Chassis/{naming.chassis}"
        spec = bmc.spec
        self.tray_paths = [f"{ROOT}/Chassis/{naming.tray.format(n=n)}" for n in range(spec.trays)]
        self.switch_tray_paths = [
            f"{ROOT}/Chassis/{naming.switch_tray.format(n=n)}" for n in range(spec.switch_trays)
        ]
        self.power_shelf_path = f"{ROOT}/Chassis/{naming.power_shelf}"
        self._tray_index = {p: n for n, p in enumerate(self.tray_paths)}
        super().__init__(site, bmc.flavour)

    # --- paths -------------------------------------------------------------------------------

    def chip_path(self, index: int) -> str:
        """A chip's Processor (``wire.chip_path`` on the factory flavour)."""
        return f"{self.system_path}/Processors/Chip{index}"

    def memory_path(self, index: int) -> str:
        return f"{self.system_path}/Memory/HBM{index}"

    def leak_detector_path(self, tray: int) -> str:
        return f"{self.tray_paths[tray]}/LeakDetectors/{self.naming.leak_detector}"

    def sensor_path(self, what: str, where: str) -> str:
        return f"{self.chassis_path}/Sensors/{self.flavour.sensor(what, where)}"

    def tray_sensor_path(self, tray: int) -> str:
        return self.sensor_path("Temp", self.tray_paths[tray].rsplit("/", 1)[-1])

    def oem_action_path(self, action: OemAction) -> str:
        """An OEM action's target: ``wire.oem_action_path`` on the factory flavour, the
        vendor's namespace under its own system elsewhere."""
        return f"{self.system_path}/Actions/Oem/{self.flavour.oem}.{action}"

    def inventory_path(self, component: str) -> str:
        return f"{INVENTORY}/{self.naming.inventory[component]}"

    def origin_of(self, fault: Fault) -> str | None:
        """The resource a fault of this BMC is about (an event's ``OriginOfCondition``)."""
        if fault.target != self.bmc.serial:
            return None
        if fault.kind == EventKind.LEAK:
            try:
                return self.leak_detector_path(self.bmc.leak_tray(fault))
            except IndexError:
                return None
        if fault.chip is None or not 0 <= fault.chip < len(self.bmc.chips):
            return None
        if fault.kind == EventKind.CHIP_FAILURE:
            return self.chip_path(fault.chip)
        if fault.kind in (EventKind.HBM_FAILURE, EventKind.ECC_STORM):
            return self.memory_path(fault.chip)
        if fault.kind in (EventKind.LINK_FLAP, EventKind.LINK_DOWN):
            return f"{self.chip_path(fault.chip)}/Ports/Link{fault.link or 0}"
        return None

    # --- GET ---------------------------------------------------------------------------------

    def resource(self, path: str) -> dict | None:
        system = self.system_path
        if path == ROOT:
            return service_root(
                self.uuid,
                Systems="Systems",
                Chassis="Chassis",
                UpdateService="UpdateService",
                TelemetryService="TelemetryService",
            )
        if path == f"{ROOT}/Systems":
            return collection(path, "ComputerSystemCollection", "Systems", [system])
        if path == f"{ROOT}/Chassis":
            return collection(
                path,
                "ChassisCollection",
                "Chassis",
                [
                    self.chassis_path,
                    *self.tray_paths,
                    *self.switch_tray_paths,
                    self.power_shelf_path,
                ],
            )
        if path == system:
            return self.system()
        if path.startswith(f"{ROOT}/Chassis/"):
            return self.chassis_resource(path)
        if path == f"{system}/Processors":
            return collection(
                path,
                "ProcessorCollection",
                "Accelerators",
                [self.chip_path(c.index) for c in self.bmc.chips],
            )
        if path == f"{system}/Memory":
            return collection(
                path, "MemoryCollection", "HBM", [self.memory_path(c.index) for c in self.bmc.chips]
            )
        if path.startswith(f"{system}/Processors/Chip"):
            return self.chip_resource(path)
        if path.startswith(f"{system}/Memory/HBM"):
            return self.memory_resource(path)
        if path.startswith(f"{ROOT}/UpdateService"):
            return self.update_resource(path)
        if path.startswith(f"{ROOT}/TelemetryService"):
            return self.telemetry_resource(path)
        return None

    def system_health(self) -> str:
        bmc = self.bmc
        failed = any(c.health == HEALTH_FAILED for c in bmc.chips)
        return "Critical" if failed or bmc.leaks else "OK"

    def system(self) -> dict:
        bmc = self.bmc
        path = self.system_path
        oem: dict[str, object] = {SystemOem.DRAINED: bmc.drained, SystemOem.CABLED: bmc.cabled}
        if self.flavour.oem == OEM:
            # Ours only: another vendor's BMC shows its standby bank in FirmwareInventory alone.
            oem[SystemOem.INACTIVE_FIRMWARE_VERSION] = bmc.firmware_inactive
        return resource(
            path,
            "ComputerSystem.v1_27_0.ComputerSystem",
            self.naming.system,
            f"UltraServer {bmc.serial}",
            SystemType="Physical",
            Manufacturer=self.flavour.manufacturer,
            SerialNumber=bmc.serial,
            Model=bmc.spec.family,
            PowerState="On" if bmc.powered else "Off",
            Status=status(self.system_health()),
            BiosVersion=bmc.firmware_active,
            ProcessorSummary={"Count": len(bmc.chips)},
            Processors=link(f"{path}/Processors"),
            Memory=link(f"{path}/Memory"),
            Links={"Chassis": [link(self.chassis_path)]},
            Actions={
                "#ComputerSystem.Reset": {
                    "target": f"{path}/Actions/ComputerSystem.Reset",
                    "ResetType@Redfish.AllowableValues": list(RESET_TYPES),
                },
                "Oem": {
                    f"#{self.flavour.oem}.{action}": {"target": self.oem_action_path(action)}
                    for action in OemAction
                },
            },
            Oem={self.flavour.oem: oem},
        )

    # --- chassis -----------------------------------------------------------------------------

    def chassis_resource(self, path: str) -> dict | None:
        base = self.chassis_path
        if path == base:
            return self.ultraserver_chassis()
        if path.startswith(f"{base}/"):
            return self.chassis_part(path[len(base) + 1 :])
        head, below, tail = path.partition("/LeakDetectors")
        tray = self._tray_index.get(head)
        if tray is not None:
            if not below:
                return self.tray_chassis(tray)
            if tail == "":
                return collection(
                    path,
                    "LeakDetectorCollection",
                    f"Leak detectors of tray {tray}",
                    [self.leak_detector_path(tray)],
                )
            if tail == f"/{self.naming.leak_detector}":
                return self.leak_detector(tray)
            return None
        if path in self.switch_tray_paths:
            return self.switch_tray(self.switch_tray_paths.index(path))
        if path == self.power_shelf_path:
            return self.power_shelf()
        return None

    def _chassis(self, path: str, id_: str, name: str, **fields: object) -> dict:
        return resource(
            path,
            "Chassis.v1_28_0.Chassis",
            id_,
            name,
            Manufacturer=self.flavour.manufacturer,
            PowerState="On" if self.bmc.powered else "Off",
            **fields,
        )

    def ultraserver_chassis(self) -> dict:
        bmc, path = self.bmc, self.chassis_path
        return self._chassis(
            path,
            self.naming.chassis,
            f"UltraServer {bmc.serial}",
            ChassisType="RackMount",
            SerialNumber=bmc.serial,
            Model=bmc.spec.family,
            Status=status("Critical" if bmc.leaks else "OK"),
            Sensors=link(f"{path}/Sensors"),
            ThermalSubsystem=link(f"{path}/ThermalSubsystem"),
            PowerSubsystem=link(f"{path}/PowerSubsystem"),
            EnvironmentMetrics=link(f"{path}/EnvironmentMetrics"),
            Links={
                "ComputerSystems": [link(self.system_path)],
                "Contains": [
                    link(p)
                    for p in (*self.tray_paths, *self.switch_tray_paths, self.power_shelf_path)
                ],
            },
        )

    def _part_links(self, **more: object) -> dict:
        return {"ContainedBy": link(self.chassis_path), **more}

    def tray_health(self, tray: int) -> str:
        chips = self.bmc.tray_chips(tray)
        chip_health = max((c.health for c in chips), default=HEALTH_OK)
        if tray in self.bmc.leaks or chip_health == HEALTH_FAILED:
            return "Critical"
        return "Warning" if chip_health == HEALTH_DEGRADED else "OK"

    def tray_chassis(self, tray: int) -> dict:
        bmc, path = self.bmc, self.tray_paths[tray]
        return resource(
            path,
            "Chassis.v1_28_0.Chassis",
            path.rsplit("/", 1)[-1],
            f"Accelerator tray {tray}",
            ChassisType="Sled",
            Manufacturer=self.flavour.manufacturer,
            Model=f"{bmc.spec.family} accelerator tray",
            SerialNumber=f"{bmc.serial}-T{tray:02d}",
            PowerState="On" if bmc.tray_powered(tray) else "Off",
            Status=status(self.tray_health(tray)),
            Location={"PartLocation": {"LocationType": "Slot", "LocationOrdinalValue": tray}},
            LeakDetectors=link(f"{path}/LeakDetectors"),
            Links=self._part_links(
                ComputerSystems=[link(self.system_path)],
                Processors=[link(self.chip_path(c.index)) for c in bmc.tray_chips(tray)],
            ),
            Actions={
                "#Chassis.Reset": {
                    "target": f"{path}/Actions/Chassis.Reset",
                    "ResetType@Redfish.AllowableValues": list(TRAY_RESET_TYPES),
                }
            },
        )

    def detector_state(self, tray: int) -> str:
        """OK, or Critical while the tray leaks (LeakDetector.DetectorState)."""
        return "Critical" if tray in self.bmc.leaks else "OK"

    def leak_detector(self, tray: int) -> dict:
        state = self.detector_state(tray)
        return resource(
            self.leak_detector_path(tray),
            "LeakDetector.v1_6_0.LeakDetector",
            self.naming.leak_detector,
            f"Tray {tray} cold plate leak detector",
            LeakDetectorType="Moisture",
            DetectorState=state,
            Status=status(state),
            PhysicalContext="ComputeBay",
            # The BMC reports; isolating the tray is the site agent's decision (HARDWARE.md).
            CriticalReactionType="None",
            WarningReactionType="None",
            Location={"PartLocation": {"ServiceLabel": f"Tray {tray} cold plate manifold"}},
        )

    def switch_tray(self, n: int) -> dict:
        bmc, path = self.bmc, self.switch_tray_paths[n]
        return self._chassis(
            path,
            path.rsplit("/", 1)[-1],
            f"Switch tray {n}",
            ChassisType="Sled",
            Model=f"{bmc.spec.family} switch tray",
            SerialNumber=f"{bmc.serial}-S{n:02d}",
            Status=status(),
            Location={"PartLocation": {"LocationType": "Slot", "LocationOrdinalValue": n}},
            Links=self._part_links(),
        )

    def power_shelf(self) -> dict:
        bmc = self.bmc
        return self._chassis(
            self.power_shelf_path,
            self.naming.power_shelf,
            "Power shelf",
            ChassisType="Shelf",
            Model=f"{bmc.spec.family} power shelf",
            SerialNumber=f"{bmc.serial}-P00",
            Status=status(),
            Links=self._part_links(),
        )

    # --- the UltraServer chassis's readings --------------------------------------------------

    def chassis_part(self, rest: str) -> dict | None:
        base = self.chassis_path
        path = f"{base}/{rest}"
        if rest == "Sensors":
            return collection(path, "SensorCollection", "Sensors", list(self.sensors()))
        if rest.startswith("Sensors/"):
            return self.sensors().get(path)
        if rest == "EnvironmentMetrics":
            return self.environment_metrics()
        if rest.startswith("ThermalSubsystem"):
            return self.thermal_resource(path)
        if rest.startswith("PowerSubsystem"):
            return self.power_resource(path)
        return None

    def tray_temp_c(self, tray: int) -> float:
        """A tray's temperature: its hottest chip."""
        return max((c.temp_c for c in self.bmc.tray_chips(tray)), default=self.bmc.coolant_c)

    def hottest_tray(self) -> int:
        trays = range(self.bmc.spec.trays)
        return max(trays, key=self.tray_temp_c, default=0)

    def coolant_c(self) -> tuple[float, float]:
        """The loop's supply and return temperatures: all the power ends up as heat in it."""
        bmc = self.bmc
        return bmc.coolant_c, coolant_outlet_c(bmc.spec, bmc.coolant_c, bmc.power_w)

    def _sensor(
        self,
        what: str,
        where: str,
        name: str,
        reading_type: str,
        units: str,
        reading: float,
        context: str,
        *,
        caution: float | None = None,
        critical: float | None = None,
        related: tuple[str, ...] = (),
        **more: object,
    ) -> dict:
        health = "OK"
        thresholds: dict[str, dict] = {}
        if caution is not None:
            thresholds["UpperCaution"] = {"Reading": caution}
            health = "Warning" if reading >= caution else health
        if critical is not None:
            thresholds["UpperCritical"] = {"Reading": critical}
            health = "Critical" if reading >= critical else health
        body = resource(
            self.sensor_path(what, where),
            "Sensor.v1_12_0.Sensor",
            self.flavour.sensor(what, where),
            name,
            ReadingType=reading_type,
            Reading=round(reading, 2),
            ReadingUnits=units,
            PhysicalContext=context,
            Status=status(health),
            **more,
        )
        if thresholds:
            body["Thresholds"] = thresholds
        if related:
            body["RelatedItem"] = [link(p) for p in related]
        return body

    def sensors(self) -> dict[str, dict]:
        """Every sensor of the UltraServer, by path: each tray, the coolant loop, the power."""
        bmc = self.bmc
        supply, ret = self.coolant_c()
        found = [
            self._sensor(
                "Temp",
                self.tray_paths[n].rsplit("/", 1)[-1],
                f"Accelerator tray {n} temperature",
                "Temperature",
                "Cel",
                self.tray_temp_c(n),
                "ComputeBay",
                caution=TRAY_CAUTION_C,
                critical=TRAY_CRITICAL_C,
                related=(self.tray_paths[n],),
            )
            for n in range(bmc.spec.trays)
        ]
        found += [
            self._sensor(
                "Temp",
                "CoolantInlet",
                "Coolant supply temperature",
                "Temperature",
                "Cel",
                supply,
                "LiquidInlet",
                caution=SUPPLY_CAUTION_C,
                critical=SUPPLY_CRITICAL_C,
            ),
            self._sensor(
                "Temp",
                "CoolantOutlet",
                "Coolant return temperature",
                "Temperature",
                "Cel",
                ret,
                "LiquidOutlet",
            ),
            self._sensor(
                "Flow",
                "Coolant",
                "Coolant flow",
                "LiquidFlowLPM",
                "L/min",
                bmc.spec.coolant_flow_lpm,
                "CoolingSubsystem",
            ),
            self._sensor(
                "Power",
                "Chassis",
                "UltraServer power",
                "Power",
                "W",
                bmc.power_w,
                "Chassis",
                ElectricalContext="Total",
                ReadingRangeMax=bmc.spec.capacity_w,
            ),
            self._sensor(
                "Energy",
                "Chassis",
                "UltraServer energy",
                "EnergyJoules",
                "J",
                bmc.energy_j,
                "Chassis",
            ),
            self._sensor(
                "Power",
                "PowerShelf",
                "Power shelf output power",
                "Power",
                "W",
                bmc.power_w,
                "PowerSubsystem",
                related=(self.power_shelf_path,),
            ),
        ]
        return {s["@odata.id"]: s for s in found}

    def environment_metrics(self) -> dict:
        hottest = self.hottest_tray()
        return resource(
            f"{self.chassis_path}/EnvironmentMetrics",
            "EnvironmentMetrics.v1_5_0.EnvironmentMetrics",
            "EnvironmentMetrics",
            "UltraServer environment",
            TemperatureCelsius={
                "Reading": round(self.tray_temp_c(hottest), 2),
                "DataSourceUri": self.tray_sensor_path(hottest),
            },
            PowerWatts={
                "Reading": round(self.bmc.power_w, 1),
                "DataSourceUri": self.sensor_path("Power", "Chassis"),
            },
            EnergyJoules={
                "Reading": round(self.bmc.energy_j, 1),
                "DataSourceUri": self.sensor_path("Energy", "Chassis"),
            },
        )

    def thermal_resource(self, path: str) -> dict | None:
        base = f"{self.chassis_path}/ThermalSubsystem"
        bmc = self.bmc
        if path == base:
            return resource(
                path,
                "ThermalSubsystem.v1_5_0.ThermalSubsystem",
                "ThermalSubsystem",
                "Liquid cooling",
                Status=status("Critical" if bmc.leaks else "OK"),
                ThermalMetrics=link(f"{path}/ThermalMetrics"),
                CoolantConnectors=link(f"{path}/CoolantConnectors"),
                LeakDetection=link(f"{path}/LeakDetection"),
            )
        if path == f"{base}/ThermalMetrics":
            hottest = self.hottest_tray()
            return resource(
                path,
                "ThermalMetrics.v1_3_2.ThermalMetrics",
                "ThermalMetrics",
                "UltraServer thermal metrics",
                TemperatureSummaryCelsius={
                    "Internal": {
                        "Reading": round(self.tray_temp_c(hottest), 2),
                        "DataSourceUri": self.tray_sensor_path(hottest),
                    }
                },
                TemperatureReadingsCelsius=[
                    {
                        "Reading": round(self.tray_temp_c(n), 2),
                        "DeviceName": f"Accelerator tray {n}",
                        "DataSourceUri": self.tray_sensor_path(n),
                    }
                    for n in range(bmc.spec.trays)
                ],
            )
        connectors = f"{base}/CoolantConnectors"
        if path == connectors:
            return collection(
                path, "CoolantConnectorCollection", "Coolant connectors", [f"{path}/Loop"]
            )
        if path == f"{connectors}/Loop":
            supply, ret = self.coolant_c()
            return resource(
                path,
                "CoolantConnector.v1_3_0.CoolantConnector",
                "Loop",
                "Rack manifold connection (secondary loop)",
                CoolantConnectorType="Pair",
                Status=status("Critical" if bmc.leaks else "OK"),
                RatedFlowLitersPerMinute=bmc.spec.coolant_flow_lpm,
                FlowLitersPerMinute={
                    "Reading": bmc.spec.coolant_flow_lpm,
                    "DataSourceUri": self.sensor_path("Flow", "Coolant"),
                },
                SupplyTemperatureCelsius={
                    "Reading": round(supply, 2),
                    "DataSourceUri": self.sensor_path("Temp", "CoolantInlet"),
                },
                ReturnTemperatureCelsius={
                    "Reading": round(ret, 2),
                    "DataSourceUri": self.sensor_path("Temp", "CoolantOutlet"),
                },
                DeltaTemperatureCelsius={"Reading": round(ret - supply, 2)},
                HeatRemovedkW={"Reading": round(bmc.power_w / 1000, 2)},
            )
        if path == f"{base}/LeakDetection":
            return self.leak_detection(path)
        return None

    def leak_detection(self, path: str) -> dict:
        """Every tray's detector in one answer (DSP0268: ``LeakDetectorGroups`` excerpts), so
        a poller reads the whole UltraServer's leaks with one GET."""
        groups = []
        for n in range(self.bmc.spec.trays):
            state = self.detector_state(n)
            groups.append(
                {
                    "GroupName": f"Accelerator tray {n}",
                    "Status": {"Health": state},
                    "Detectors": [
                        {
                            "DataSourceUri": self.leak_detector_path(n),
                            "DeviceName": f"Tray {n} cold plate leak detector",
                            "DetectorState": state,
                        }
                    ],
                }
            )
        return resource(
            path,
            "LeakDetection.v1_2_0.LeakDetection",
            "LeakDetection",
            "Leak detection",
            Status=status("Critical" if self.bmc.leaks else "OK"),
            LeakDetectorGroups=groups,
        )

    def power_supply_paths(self) -> list[str]:
        base = f"{self.chassis_path}/PowerSubsystem/PowerSupplies"
        return [
            f"{base}/{self.naming.power_supply.format(n=n)}"
            for n in range(self.bmc.spec.power_supplies)
        ]

    def power_resource(self, path: str) -> dict | None:
        bmc = self.bmc
        base = f"{self.chassis_path}/PowerSubsystem"
        if path == base:
            return resource(
                path,
                "PowerSubsystem.v1_1_3.PowerSubsystem",
                "PowerSubsystem",
                "Power",
                Status=status(),
                CapacityWatts=bmc.spec.capacity_w,
                Allocation={"AllocatedWatts": round(bmc.power_w, 1)},
                PowerSupplies=link(f"{path}/PowerSupplies"),
            )
        supplies = self.power_supply_paths()
        if path == f"{base}/PowerSupplies":
            return collection(path, "PowerSupplyCollection", "Power shelf units", supplies)
        head, _, tail = path.rpartition("/")
        if path in supplies:
            return self.power_supply(supplies.index(path))
        if head in supplies and tail == "Metrics":
            return self.power_supply_metrics(supplies.index(head))
        return None

    def power_supply(self, n: int) -> dict:
        path = self.power_supply_paths()[n]
        return resource(
            path,
            "PowerSupply.v1_6_0.PowerSupply",
            path.rsplit("/", 1)[-1],
            f"Power shelf unit {n}",
            PowerSupplyType="AC",
            PowerCapacityWatts=PSU_RATED_W,
            Manufacturer=self.flavour.manufacturer,
            Model="Rectifier 5.5 kW",
            SerialNumber=f"{self.bmc.serial}-PSU{n:02d}",
            FirmwareVersion=self.bmc.component_firmware.get(FirmwareComponent.POWER_SHELF, ""),
            HotPluggable=True,
            Status=status(),
            Location={"PartLocation": {"LocationType": "Bay", "LocationOrdinalValue": n}},
            Metrics=link(f"{path}/Metrics"),
        )

    def power_supply_metrics(self, n: int) -> dict:
        """The units share the load evenly (N+1, all active)."""
        bmc = self.bmc
        output = bmc.power_w / bmc.spec.power_supplies
        return resource(
            f"{self.power_supply_paths()[n]}/Metrics",
            "PowerSupplyMetrics.v1_2_0.PowerSupplyMetrics",
            "Metrics",
            f"Power shelf unit {n} metrics",
            Status=status(),
            InputPowerWatts={"Reading": round(output / PSU_EFFICIENCY, 1)},
            OutputPowerWatts={"Reading": round(output, 1)},
        )

    # --- the system's parts ------------------------------------------------------------------

    def _chip(self, path: str, prefix: str) -> tuple[int, str] | None:
        rest = path[len(prefix) :]
        index, _, tail = rest.partition("/")
        if not index.isdigit() or int(index) >= len(self.bmc.chips):
            return None
        return int(index), tail

    def chip_resource(self, path: str) -> dict | None:
        found = self._chip(path, f"{self.system_path}/Processors/Chip")
        if found is None:
            return None
        index, tail = found
        chip, spec = self.bmc.chips[index], self.bmc.spec
        base = self.chip_path(index)
        if tail == "":
            return resource(
                base,
                "Processor.v1_22_0.Processor",
                f"Chip{index}",
                f"Accelerator {index}",
                ProcessorType=spec.processor_type,
                Manufacturer=self.flavour.manufacturer,
                Model=spec.family,
                SerialNumber=f"{self.bmc.serial}-C{index:03d}",
                Status=status(HEALTH_NAMES[chip.health]),
                EnvironmentMetrics=link(f"{base}/EnvironmentMetrics"),
                Ports=link(f"{base}/Ports"),
                Links={
                    "Memory": [link(self.memory_path(index))],
                    "Chassis": link(self.tray_paths[spec.tray_of(index)]),
                },
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
        found = self._chip(path, f"{self.system_path}/Memory/HBM")
        if found is None:
            return None
        index, tail = found
        chip, spec = self.bmc.chips[index], self.bmc.spec
        base = self.memory_path(index)
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

    # --- firmware ----------------------------------------------------------------------------

    def manager_path(self) -> str | None:
        """The BMC's own Manager, where the service serves one (its firmware's RelatedItem)."""
        managers = self._resource(f"{ROOT}/Managers") if hasattr(self, "_resource") else None
        members = managers.get("Members") if isinstance(managers, dict) else None
        return str(members[0]["@odata.id"]) if members else None

    def related_items(self, component: str) -> list[str]:
        """The resources a component's firmware runs on (SoftwareInventory.RelatedItem)."""
        if component == FirmwareComponent.BMC:
            manager = self.manager_path()
            return [manager] if manager else [self.chassis_path]
        if component in (FirmwareComponent.BIOS, FirmwareComponent.NIC):
            return [self.system_path]
        if component == FirmwareComponent.ACCELERATOR_TRAY:
            return list(self.tray_paths)
        if component == FirmwareComponent.SWITCH_TRAY:
            return list(self.switch_tray_paths)
        return [self.power_shelf_path, *self.power_supply_paths()]

    def inventory(self) -> dict[str, tuple[str, str, bool]]:
        """``{SoftwareInventory path: (component, version, standby)}``."""
        found = {
            self.inventory_path(component): (component, version, False)
            for component, version in self.bmc.firmware_inventory().items()
        }
        if self.bmc.firmware_inactive:
            found[f"{INVENTORY}/{self.naming.inactive_bios}"] = (
                FirmwareComponent.BIOS,
                self.bmc.firmware_inactive,
                True,
            )
        return found

    def software_id(self, component: str) -> str:
        name = f"{self.flavour.name}-{component}"
        if self.naming.guid_software_ids:
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"factory-sim:firmware:{name}")).upper()
        return name

    def software_inventory(self, path: str, component: str, version: str, standby: bool) -> dict:
        name = self.naming.inventory_names[component]
        return resource(
            path,
            "SoftwareInventory.v1_13_0.SoftwareInventory",
            path.rsplit("/", 1)[-1],
            f"{name} (inactive bank)" if standby else name,
            Version=version,
            Updateable=True,
            Manufacturer=self.flavour.manufacturer,
            SoftwareId=self.software_id(component),
            RelatedItem=[link(p) for p in self.related_items(component)],
            Status=status(state="StandbySpare" if standby else "Enabled"),
        )

    def update_resource(self, path: str) -> dict | None:
        base = f"{ROOT}/UpdateService"
        if path == base:
            push = (
                {
                    "MultipartHttpPushUri": wire.MULTIPART_PUSH_PATH,
                    "MaxImageSizeBytes": MAX_IMAGE_BYTES,
                }
                if self.flavour.multipart_push
                else {}
            )
            return service(
                path,
                "UpdateService.v1_17_0.UpdateService",
                "Update Service",
                FirmwareInventory=link(INVENTORY),
                **push,
                Actions={
                    "#UpdateService.SimpleUpdate": {
                        "target": f"{base}/Actions/UpdateService.SimpleUpdate",
                        "TransferProtocol@Redfish.AllowableValues": ["HTTPS"],
                    }
                },
            )
        inventory = self.inventory()
        if path == INVENTORY:
            return collection(path, "SoftwareInventoryCollection", "Firmware", list(inventory))
        if path in inventory:
            return self.software_inventory(path, *inventory[path])
        return None

    def post_only_paths(self) -> tuple[str, ...]:
        return (wire.MULTIPART_PUSH_PATH,) if self.flavour.multipart_push else ()

    def push_update(self, form: dict, now: float) -> Task:
        """A multipart push (DSP0266 *Multipart HTTP push updates*): the image is the
        ``UpdateFile`` part, named as an ImageURI's last segment; ``UpdateParameters`` holds
        ``Targets`` and ``@Redfish.OperationApplyTime`` (only ``Immediate`` here)."""
        upload = form.get("UpdateFile")
        if not isinstance(upload, Upload):
            raise HttpError(
                400, "UpdateFile (the image, a file part) is required", "ActionParameterMissing"
            )
        if not upload.content:
            raise HttpError(400, "UpdateFile is empty", "ActionParameterValueError")
        if len(upload.content) > MAX_IMAGE_BYTES:
            raise HttpError(
                413, f"UpdateFile exceeds MaxImageSizeBytes ({MAX_IMAGE_BYTES})", "GeneralError"
            )
        parameters = form.get("UpdateParameters", {})
        if not isinstance(parameters, dict):
            raise HttpError(
                400, "UpdateParameters must be a JSON object", "ActionParameterValueTypeError"
            )
        apply_time = parameters.get("@Redfish.OperationApplyTime", "Immediate")
        if apply_time != "Immediate":
            raise HttpError(
                400,
                f"@Redfish.OperationApplyTime {apply_time!r} is not supported (Immediate is)",
                "ActionParameterValueNotInList",
            )
        components = self.update_targets(parameters.get("Targets"))
        return self.bmc.simple_update(upload.filename, now, components, sha256=upload.sha256)

    def update_targets(self, targets: object) -> list[str]:
        """The components SimpleUpdate's ``Targets`` name: SoftwareInventory entries, or the
        resources they run on (the system, a tray, the power shelf, the Manager)."""
        if targets is None:
            return [FirmwareComponent.BIOS]
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise HttpError(400, "Targets must be a list of URIs", "ActionParameterValueTypeError")
        inventory = self.inventory()
        by_resource = {
            p: component
            for component in self.bmc.firmware_inventory()
            for p in self.related_items(component)
        }
        by_resource[self.system_path] = FirmwareComponent.BIOS  # the host's NIC: by its entry
        components = []
        for target in targets:
            uri = target.rstrip("/")
            if uri in inventory:
                components.append(inventory[uri][0])
            elif uri in by_resource:
                components.append(by_resource[uri])
            elif uri.startswith(f"{ROOT}/Managers/"):
                components.append(FirmwareComponent.BMC)
            else:
                raise HttpError(
                    400,
                    f"Targets: {target} is no firmware of this BMC",
                    "ActionParameterValueNotInList",
                )
        return components or [FirmwareComponent.BIOS]

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
            prefix = self.chip_path(chip.index)
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
                    raise HttpError(400, "ImageURI is required", "ActionParameterMissing")
                components = self.update_targets(body.get("Targets"))
                task = bmc.simple_update(image, now, components)
                return tasks.accepted(self, task)
            if path == wire.MULTIPART_PUSH_PATH and self.flavour.multipart_push:
                return tasks.accepted(self, self.push_update(body, now))
            if path == f"{self.system_path}/Actions/ComputerSystem.Reset":
                bmc.reset(self._reset_type(body, RESET_TYPES))
                return 204, {}, {}
            tray = self._tray_index.get(path.removesuffix("/Actions/Chassis.Reset"))
            if tray is not None and path.endswith("/Actions/Chassis.Reset"):
                bmc.set_tray_power(tray, self._reset_type(body, TRAY_RESET_TYPES) == "On")
                return 204, {}, {}
            drains = {
                self.oem_action_path(OemAction.DRAIN): True,
                self.oem_action_path(OemAction.UNDRAIN): False,
            }
            if path in drains:
                bmc.drained = drains[path]
                return 200, bmc.state(), {}
            if path == self.oem_action_path(OemAction.ACTIVATE_BANK):
                if not bmc.activate_bank(str(body.get(wire.ACTIVATE_BANK_VERSION, ""))):
                    raise HttpError(409, "no firmware bank holds that version")
                return 200, bmc.state(), {}
            if path == self.oem_action_path(OemAction.BURN_IN):
                return tasks.accepted(self, bmc.burn_in(now))
        raise HttpError(404, f"no action at {path}")

    @staticmethod
    def _reset_type(body: dict, allowed: tuple[str, ...]) -> str:
        reset_type = body.get("ResetType", "ForceRestart" if "ForceRestart" in allowed else "On")
        if reset_type not in allowed:
            raise HttpError(
                400, f"ResetType {reset_type!r} is not supported", "ActionParameterValueNotInList"
            )
        return str(reset_type)
