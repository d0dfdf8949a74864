"""The site's simulated coolant distribution unit, shaped like DMTF's ``public-cooling-unit``
mockup: a CoolingUnit with its Coolant, Primary (facility water) and Secondary (the servers'
loop) CoolantConnectors carrying supply and return temperatures, flow, pressure and the heat
removed, Pumps, Filters, a Reservoir, LeakDetection with the CDU's own LeakDetectors,
EnvironmentMetrics, and a Chassis whose Sensors the readings point at (``DataSourceUri``).

The factory flavour names members as the mockup does (CDU ``1``, connectors ``1``, detectors
by what they watch); any other vendor's flavour names them its own way (CDU ``CDU-A``,
connectors ``Loop1``, detectors numbered, sensors per the flavour), so an agent must discover
members from collections.
"""

from __future__ import annotations

from dataclasses import dataclass

from factory.simulator.devices import (
    CDU_LEAK_DETECTORS,
    COOLANT_DENSITY_KG_M3,
    COOLANT_SPECIFIC_HEAT_KJ,
    PUMP_SPEED_PERCENT,
    PUMPS,
    WATER_DENSITY_KG_M3,
    WATER_SPECIFIC_HEAT_KJ,
    Cdu,
    Site,
)
from factory.simulator.faults import Fault
from factory.simulator.flavours import DEFAULT as DEFAULT_FLAVOUR
from factory.simulator.redfish.common import (
    ROOT,
    Tree,
    collection,
    link,
    resource,
    service_root,
    status,
)
from factory.simulator.redfish.management import MANAGER
from factory.wire import EventKind

THERMAL_EQUIPMENT = f"{ROOT}/ThermalEquipment"
CDUS = f"{THERMAL_EQUIPMENT}/CDUs"
CHASSIS = f"{ROOT}/Chassis"
SENSOR_TYPE = "Sensor.v1_12_0.Sensor"
PUMP_W_EACH = 3_000.0  # electrical power of one pump at its running speed (estimate)
CABINET_C = 26.0  # air in the CDU's cabinet (estimate)
CABINET_HUMIDITY = 35.0
HOT_MARGIN_K = 5.0  # supply this far above its setpoint is a Warning


@dataclass(frozen=True)
class Sensor:
    id: str
    name: str
    reading_type: str
    units: str
    reading: float
    context: str

    def excerpt(self, chassis: str) -> dict:
        return {"DataSourceUri": f"{chassis}/Sensors/{self.id}", "Reading": self.reading}


class CduTree(Tree):
    """The site's coolant distribution unit (ThermalEquipment/CDUs)."""

    def __init__(self, site: Site, cdu: Cdu):
        self.cdu = cdu
        self.name = cdu.serial
        super().__init__(site, cdu.flavour)
        self.numbered = self.flavour.name != DEFAULT_FLAVOUR.name

    # --- names -------------------------------------------------------------------------------

    @property
    def unit(self) -> str:
        return f"{CDUS}/{'CDU-A' if self.numbered else '1'}"

    @property
    def chassis(self) -> str:
        return f"{CHASSIS}/{'Enclosure1' if self.numbered else 'CDU'}"

    @property
    def connector_id(self) -> str:
        return "Loop1" if self.numbered else "1"

    def detector_id(self, detector: str) -> str:
        names = [d[0] for d in CDU_LEAK_DETECTORS]
        return str(names.index(detector) + 1) if self.numbered else detector

    def detector_path(self, detector: str) -> str:
        return f"{self.unit}/LeakDetection/LeakDetectors/{self.detector_id(detector)}"

    def origin_of(self, fault: Fault) -> str | None:
        """Where a fault of this CDU shows: a coolant excursion at the secondary supply
        temperature sensor, a leak at the detector it wetted."""
        if fault.target != self.cdu.serial:
            return None
        if fault.kind == EventKind.COOLANT_EXCURSION:
            return f"{self.chassis}/Sensors/{self._sensors()['secondary.supply'].id}"
        if fault.kind == EventKind.LEAK:
            detector = self.cdu.detector_of(fault)
            return self.detector_path(detector) if detector else self.unit
        return self.unit

    # --- readings ----------------------------------------------------------------------------

    def _sensors(self) -> dict[str, Sensor]:
        cdu = self.cdu
        heat_kw = cdu.heat_w / 1000
        sensors: dict[str, Sensor] = {}

        def add(
            key: str,
            what: str,
            where: str,
            name: str,
            kind: str,
            units: str,
            reading: float,
            context: str,
        ) -> None:
            sensor_id = self.flavour.sensor(what, where)
            sensors[key] = Sensor(sensor_id, name, kind, units, round(reading, 2), context)

        for side, supply, ret, flow in (
            ("Secondary", cdu.supply_c, cdu.return_c, cdu.flow_lpm),
            ("Primary", cdu.primary_supply_c, cdu.primary_return_c, cdu.primary_flow_lpm),
        ):
            key = side.lower()
            add(
                f"{key}.supply",
                "Temp",
                f"{side}Supply",
                f"{side} supply temperature",
                "Temperature",
                "Cel",
                supply,
                "LiquidOutlet" if key == "secondary" else "LiquidInlet",
            )
            add(
                f"{key}.return",
                "Temp",
                f"{side}Return",
                f"{side} return temperature",
                "Temperature",
                "Cel",
                ret,
                "LiquidInlet" if key == "secondary" else "LiquidOutlet",
            )
            add(
                f"{key}.delta",
                "Temp",
                f"{side}Delta",
                f"{side} delta temperature",
                "Temperature",
                "Cel",
                ret - supply,
                "CoolingSubsystem",
            )
            add(
                f"{key}.flow",
                "Flow",
                side,
                f"{side} flow",
                "LiquidFlowLPM",
                "L/min",
                flow,
                "CoolingSubsystem",
            )
            add(
                f"{key}.heat",
                "HeatLoad",
                side,
                f"{side} heat load",
                "Heat",
                "kW",
                heat_kw,
                "CoolingSubsystem",
            )
        add(
            "secondary.dp",
            "DeltaPressure",
            "Secondary",
            "Secondary delta pressure",
            "PressurekPa",
            "kPa",
            cdu.delta_pressure_kpa,
            "CoolingSubsystem",
        )
        add(
            "cabinet.temp",
            "Temp",
            "Cabinet",
            "Cabinet temperature",
            "Temperature",
            "Cel",
            CABINET_C,
            "Chassis",
        )
        add(
            "cabinet.humidity",
            "Humidity",
            "Cabinet",
            "Cabinet humidity",
            "Humidity",
            "%",
            CABINET_HUMIDITY,
            "Chassis",
        )
        add(
            "pumps.power", "Power", "Pumps", "Pump power", "Power", "W", PUMPS * PUMP_W_EACH, "Pump"
        )
        return sensors

    def _health(self) -> str:
        now = self.site.now
        if self.cdu.leaks(now):
            return "Critical"
        return "Warning" if self.cdu.supply_c > self.cdu.nominal_c + HOT_MARGIN_K else "OK"

    # --- resources ---------------------------------------------------------------------------

    def resource(self, path: str) -> dict | None:
        if path == ROOT:
            return service_root(self.uuid, ThermalEquipment="ThermalEquipment", Chassis="Chassis")
        if path == THERMAL_EQUIPMENT:
            return resource(
                path,
                "ThermalEquipment.v1_2_0.ThermalEquipment",
                "ThermalEquipment",
                "Thermal equipment",
                Status={"State": "Enabled", "Health": "OK", "HealthRollup": self._health()},
                CDUs=link(CDUS),
            )
        if path == CDUS:
            return collection(path, "CoolingUnitCollection", "CDUs", [self.unit])
        if path == self.unit or path.startswith(f"{self.unit}/"):
            return self._unit_resource(path)
        if path == CHASSIS:
            return collection(path, "ChassisCollection", "Chassis", [self.chassis])
        if path == self.chassis or path.startswith(f"{self.chassis}/"):
            return self._chassis_resource(path)
        return None

    def _unit_resource(self, path: str) -> dict | None:
        cdu, unit, now = self.cdu, self.unit, self.site.now
        sensors = self._sensors()
        chassis = self.chassis
        if path == unit:
            health = self._health()
            return resource(
                path,
                "CoolingUnit.v1_5_0.CoolingUnit",
                unit.rsplit("/", 1)[-1],
                f"CDU {cdu.serial}",
                EquipmentType="CDU",
                Manufacturer=self.flavour.manufacturer,
                Model="Simulated liquid-to-liquid CDU",
                SerialNumber=cdu.serial,
                FirmwareVersion="1.0.0",
                Status={"State": "Enabled", "Health": health, "HealthRollup": health},
                CoolingCapacityWatts=2_000_000,
                Coolant=self._coolant(),
                PrimaryCoolantConnectors=link(f"{unit}/PrimaryCoolantConnectors"),
                SecondaryCoolantConnectors=link(f"{unit}/SecondaryCoolantConnectors"),
                Pumps=link(f"{unit}/Pumps"),
                Filters=link(f"{unit}/Filters"),
                Reservoirs=link(f"{unit}/Reservoirs"),
                LeakDetection=link(f"{unit}/LeakDetection"),
                EnvironmentMetrics=link(f"{unit}/EnvironmentMetrics"),
                Links={"Chassis": [link(chassis)], "ManagedBy": [link(MANAGER)]},
            )
        for side in ("Primary", "Secondary"):
            connectors = f"{unit}/{side}CoolantConnectors"
            if path == connectors:
                return collection(
                    path,
                    "CoolantConnectorCollection",
                    f"{side} coolant connectors",
                    [f"{connectors}/{self.connector_id}"],
                )
            if path == f"{connectors}/{self.connector_id}":
                return self._connector(path, side, sensors)
        if path == f"{unit}/Pumps":
            members = [f"{path}/{n}" for n in range(1, PUMPS + 1)]
            return collection(path, "PumpCollection", "Pumps", members)
        for n in range(1, PUMPS + 1):
            if path == f"{unit}/Pumps/{n}":
                return resource(
                    path,
                    "Pump.v1_2_0.Pump",
                    str(n),
                    f"Secondary loop pump {n}",
                    PumpType="Liquid",
                    Status=status(),
                    ServiceHours=round(now / 3600, 2),
                    PumpSpeedPercent={"Reading": PUMP_SPEED_PERCENT},
                )
        if path == f"{unit}/Filters":
            return collection(path, "FilterCollection", "Filters", [f"{path}/1"])
        if path == f"{unit}/Filters/1":
            return resource(
                path,
                "Filter.v1_1_0.Filter",
                "1",
                "Secondary loop filter",
                Status=status(),
                ServiceHours=round(now / 3600, 2),
                RatedServiceHours=8760,
                Replaceable=True,
                HotPluggable=False,
            )
        if path == f"{unit}/Reservoirs":
            return collection(path, "ReservoirCollection", "Reservoirs", [f"{path}/1"])
        if path == f"{unit}/Reservoirs/1":
            low = "Reservoir" in cdu.leaks(now)
            return resource(
                path,
                "Reservoir.v1_0_2.Reservoir",
                "1",
                "Expansion reservoir",
                ReservoirType="Reserve",
                CapacityLiters=200,
                Status=status("Warning" if low else "OK"),
                FluidLevelStatus="Warning" if low else "OK",
            )
        if path == f"{unit}/LeakDetection" or path.startswith(f"{unit}/LeakDetection/"):
            return self._leak_resource(path)
        if path == f"{unit}/EnvironmentMetrics":
            return resource(
                path,
                "EnvironmentMetrics.v1_5_0.EnvironmentMetrics",
                "EnvironmentMetrics",
                f"Environment of CDU {cdu.serial}",
                TemperatureCelsius=sensors["cabinet.temp"].excerpt(chassis),
                HumidityPercent=sensors["cabinet.humidity"].excerpt(chassis),
                PowerWatts=sensors["pumps.power"].excerpt(chassis),
            )
        return None

    def _coolant(self, side: str = "Secondary") -> dict:
        if side == "Primary":
            return {
                "CoolantType": "Water",
                "SpecificHeatkJoulesPerKgK": WATER_SPECIFIC_HEAT_KJ,
                "DensityKgPerCubicMeter": WATER_DENSITY_KG_M3,
            }
        return {
            "CoolantType": "Water",
            "AdditiveName": "Propylene glycol",
            "AdditivePercent": 25,
            "SpecificHeatkJoulesPerKgK": COOLANT_SPECIFIC_HEAT_KJ,
            "DensityKgPerCubicMeter": COOLANT_DENSITY_KG_M3,
        }

    def _connector(self, path: str, side: str, sensors: dict[str, Sensor]) -> dict:
        key, chassis = side.lower(), self.chassis
        hot = side == "Secondary" and self.cdu.supply_c > self.cdu.nominal_c + HOT_MARGIN_K
        extra: dict[str, object] = {}
        if side == "Secondary":
            extra["DeltaPressurekPa"] = sensors["secondary.dp"].excerpt(chassis)
            extra["SupplyTemperatureControlCelsius"] = {
                "SetPoint": self.cdu.nominal_c,
                "ControlMode": "Automatic",
            }
        return resource(
            path,
            "CoolantConnector.v1_3_0.CoolantConnector",
            self.connector_id,
            "Facility water" if side == "Primary" else "Rack manifold supply and return",
            CoolantConnectorType="Pair",
            Status=status("Warning" if hot else "OK"),
            Coolant=self._coolant(side),
            FlowLitersPerMinute=sensors[f"{key}.flow"].excerpt(chassis),
            SupplyTemperatureCelsius=sensors[f"{key}.supply"].excerpt(chassis),
            ReturnTemperatureCelsius=sensors[f"{key}.return"].excerpt(chassis),
            DeltaTemperatureCelsius=sensors[f"{key}.delta"].excerpt(chassis),
            HeatRemovedkW=sensors[f"{key}.heat"].excerpt(chassis),
            **extra,
        )

    def _leak_resource(self, path: str) -> dict | None:
        cdu, now = self.cdu, self.site.now
        base = f"{self.unit}/LeakDetection"
        detectors = f"{base}/LeakDetectors"
        wet = cdu.leaks(now)
        if path == base:
            return resource(
                path,
                "LeakDetection.v1_2_0.LeakDetection",
                "LeakDetection",
                "Leak detection",
                Status=status("Critical" if wet else "OK"),
                LeakDetectors=link(detectors),
                LeakDetectorGroups=[
                    {
                        "GroupName": "Detectors in the CDU",
                        "Status": {"Health": "Critical" if wet else "OK"},
                        "Detectors": [
                            {
                                "DataSourceUri": self.detector_path(name),
                                "DeviceName": label,
                                "DetectorState": "Critical" if name in wet else "OK",
                            }
                            for name, _, label in CDU_LEAK_DETECTORS
                        ],
                    }
                ],
            )
        if path == detectors:
            members = [self.detector_path(name) for name, _, _ in CDU_LEAK_DETECTORS]
            return collection(path, "LeakDetectorCollection", "Leak detectors", members)
        for name, kind, label in CDU_LEAK_DETECTORS:
            if path == self.detector_path(name):
                state = "Critical" if name in wet else "OK"
                return resource(
                    path,
                    "LeakDetector.v1_6_0.LeakDetector",
                    self.detector_id(name),
                    label,
                    LeakDetectorType=kind,
                    DetectorState=state,
                    Status=status(state),
                    PhysicalContext="Pump" if name == "PumpTray" else "CoolingSubsystem",
                    Location={"PartLocation": {"ServiceLabel": label, "LocationType": "Bay"}},
                )
        return None

    def _chassis_resource(self, path: str) -> dict | None:
        chassis = self.chassis
        if path == chassis:
            return resource(
                path,
                "Chassis.v1_28_0.Chassis",
                chassis.rsplit("/", 1)[-1],
                f"Chassis of CDU {self.cdu.serial}",
                ChassisType="RackMount",
                Manufacturer=self.flavour.manufacturer,
                Model="Simulated liquid-to-liquid CDU",
                SerialNumber=self.cdu.serial,
                Status=status(self._health()),
                Sensors=link(f"{path}/Sensors"),
                Links={"ManagedBy": [link(MANAGER)]},
            )
        sensors = self._sensors()
        if path == f"{chassis}/Sensors":
            members = [f"{path}/{s.id}" for s in sensors.values()]
            return collection(path, "SensorCollection", "CDU sensors", members)
        for key, sensor in sensors.items():
            if path == f"{chassis}/Sensors/{sensor.id}":
                hot = key == "secondary.supply" and self.cdu.excursion
                return resource(
                    path,
                    SENSOR_TYPE,
                    sensor.id,
                    sensor.name,
                    ReadingType=sensor.reading_type,
                    Reading=sensor.reading,
                    ReadingUnits=sensor.units,
                    PhysicalContext=sensor.context,
                    Status=status("Warning" if hot else "OK"),
                )
        return None
