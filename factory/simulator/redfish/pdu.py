"""A rack's simulated PDUs, shaped like DMTF's ``public-pdu`` mockup: per feed a RackPDU with its
Mains (per-phase current and voltage), Branches, Outlets (``Outlet.PowerControl`` switches the
load for real) and Metrics, and a Chassis whose Sensors every reading points at
(``DataSourceUri``).

The factory flavour names members as DMTF's mockup does (RackPDU = the feed's name, Mains
``AC1``, Branch ``A``, Outlet ``A1``); any other vendor's flavour numbers them (RackPDU ``1``
with the feed's name as ``UserLabel``, Mains ``1``, Branch ``CB1``, Outlet ``1``) and names its
sensors its own way, so an agent must discover members from collections.
"""

from __future__ import annotations

from dataclasses import dataclass

from factory import wire
from factory.simulator.devices import PHASES, POWER_FACTOR, Outlet, RackPdu, Site
from factory.simulator.faults import Fault
from factory.simulator.flavours import DEFAULT as DEFAULT_FLAVOUR
from factory.simulator.redfish.common import (
    ROOT,
    HttpError,
    Reply,
    Tree,
    collection,
    link,
    resource,
    service_root,
    status,
)
from factory.simulator.redfish.management import MANAGER
from factory.wire import EventKind

POWER_EQUIPMENT = f"{ROOT}/PowerEquipment"
CHASSIS = f"{ROOT}/Chassis"
SENSOR_TYPE = "Sensor.v1_12_0.Sensor"
POWER_CONTROL = "Outlet.PowerControl"
OUTLET_STATES = ["On", "Off", "PowerCycle"]
LINE_TO_NEUTRAL = ("Line1ToNeutral", "Line2ToNeutral", "Line3ToNeutral")
LINE_TO_LINE = ("Line1ToLine2", "Line2ToLine3", "Line3ToLine1")
UTILITY_OUTLET_A = 16.0  # IEC C19


@dataclass(frozen=True)
class Sensor:
    """One reading of a PDU's chassis: its Sensor resource and the excerpts that cite it."""

    id: str
    name: str
    reading_type: str
    units: str
    reading: float
    context: str  # PhysicalContext
    electrical: str | None = None  # ElectricalContext

    def excerpt(self, chassis: str, **extra: object) -> dict:
        return {"DataSourceUri": f"{chassis}/Sensors/{self.id}", "Reading": self.reading, **extra}


class PduTree(Tree):
    """A rack's PDUs: one PowerDistribution per feed path, each with its mains circuit."""

    def __init__(self, site: Site, pdu: RackPdu):
        self.pdu = pdu
        self.name = pdu.serial
        super().__init__(site, pdu.flavour)
        self.numbered = self.flavour.name != DEFAULT_FLAVOUR.name

    # --- names -------------------------------------------------------------------------------

    def unit_id(self, feed: str) -> str:
        return str(sorted(self.pdu.feeds).index(feed) + 1) if self.numbered else feed

    def unit_path(self, feed: str) -> str:
        return f"{wire.RACK_PDUS_PATH}/{self.unit_id(feed)}"

    def mains_id(self) -> str:
        return "1" if self.numbered else wire.PDU_MAINS.rsplit("/", 1)[-1]

    def mains_path(self, feed: str) -> str:
        return f"{self.unit_path(feed)}/Mains/{self.mains_id()}"

    def chassis_path(self, feed: str) -> str:
        name = f"PDU{self.unit_id(feed)}" if self.numbered else feed
        return f"{CHASSIS}/{name}"

    def branch_id(self, branch: str) -> str:
        return f"CB{ord(branch) - ord('A') + 1}" if self.numbered else branch

    def outlet_id(self, feed: str, outlet: Outlet) -> str:
        return str(self.pdu.outlets[feed].index(outlet) + 1) if self.numbered else outlet.id

    def sensor_id(self, what: str, where: str) -> str:
        return self.flavour.sensor(what, where)

    def origin_of(self, fault: Fault) -> str | None:
        """Where a fault of this PDU shows: a feed loss at that feed's Mains circuit."""
        if fault.target != self.pdu.serial:
            return None
        if fault.kind == EventKind.FEED_LOSS:
            feed = fault.feed if fault.feed in self.pdu.feeds else next(iter(self.pdu.feeds))
            return self.mains_path(feed)
        return None

    # --- readings ----------------------------------------------------------------------------

    def _sensors(self, feed: str) -> dict[str, Sensor]:
        """Every reading of one feed's PDU, by a key of ours (``mains.power``...)."""
        pdu = self.pdu
        up = pdu.feed_up(feed, self.site.now)
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
            electrical: str | None = None,
        ) -> None:
            sensors[key] = Sensor(
                self.sensor_id(what, where),
                name,
                kind,
                units,
                round(reading, 2),
                context,
                electrical,
            )

        volts = pdu.phase_v[feed]
        lines_w = pdu.mains_phase_w(feed)
        lines_a = pdu.phase_amps(feed, lines_w)
        for i, line in enumerate(PHASES):
            n = i + 1
            add(
                f"mains.a{n}",
                "Current",
                f"MainsL{n}",
                f"Mains current {line}",
                "Current",
                "A",
                lines_a[i],
                "ACInput",
                line,
            )
            add(
                f"mains.v{n}n",
                "Voltage",
                f"MainsL{n}N",
                f"Mains voltage {LINE_TO_NEUTRAL[i]}",
                "Voltage",
                "V",
                volts[i],
                "ACInput",
                LINE_TO_NEUTRAL[i],
            )
            a, b = volts[i], volts[(i + 1) % 3]
            add(
                f"mains.v{n}l",
                "Voltage",
                f"MainsL{n}L{(i + 1) % 3 + 1}",
                f"Mains voltage {LINE_TO_LINE[i]}",
                "Voltage",
                "V",
                (a * a + b * b + a * b) ** 0.5,
                "ACInput",
                LINE_TO_LINE[i],
            )
            add(
                f"mains.w{n}",
                "Power",
                f"MainsL{n}N",
                f"Mains power {LINE_TO_NEUTRAL[i]}",
                "Power",
                "W",
                lines_w[i],
                "ACInput",
                LINE_TO_NEUTRAL[i],
            )
        add(
            "mains.an",
            "Current",
            "MainsNeutral",
            "Mains current Neutral",
            "Current",
            "A",
            pdu.neutral_amps(lines_a),
            "ACInput",
            "Neutral",
        )
        add(
            "mains.power",
            "Power",
            "Mains",
            "Mains power",
            "Power",
            "W",
            pdu.load_w[feed],
            "ACInput",
            "Total",
        )
        add(
            "mains.energy",
            "Energy",
            "Mains",
            "Mains energy",
            "EnergykWh",
            "kW.h",
            pdu.energy_j[feed] / 3.6e6,
            "ACInput",
            "Total",
        )
        add(
            "mains.hz",
            "Frequency",
            "Mains",
            "Mains frequency",
            "Frequency",
            "Hz",
            pdu.frequency_hz[feed] if up else 0.0,
            "ACInput",
        )
        for branch in pdu.branches():
            outlets = pdu.branch_outlets(feed, branch)
            bid = self.branch_id(branch)
            add(
                f"branch.{branch}.power",
                "Power",
                f"Branch{bid}",
                f"Branch {bid} power",
                "Power",
                "W",
                sum(o.power_w for o in outlets),
                "PowerOutlet",
                "Total",
            )
            for i, line in enumerate(PHASES):
                add(
                    f"branch.{branch}.a{i + 1}",
                    "Current",
                    f"Branch{bid}L{i + 1}",
                    f"Branch {bid} current {line}",
                    "Current",
                    "A",
                    pdu.amps(feed, sum(o.phase_w[i] for o in outlets), i),
                    "PowerOutlet",
                    line,
                )
        for outlet in pdu.outlets[feed]:
            oid = self.outlet_id(feed, outlet)
            where = f"Outlet{oid}"
            add(
                f"outlet.{outlet.id}.power",
                "Power",
                where,
                f"Outlet {oid} power",
                "Power",
                "W",
                outlet.power_w,
                "PowerOutlet",
                "Total",
            )
            add(
                f"outlet.{outlet.id}.energy",
                "Energy",
                where,
                f"Outlet {oid} energy",
                "EnergykWh",
                "kW.h",
                outlet.energy_j / 3.6e6,
                "PowerOutlet",
                "Total",
            )
            if outlet.polyphase:
                for i, line in enumerate(PHASES):
                    add(
                        f"outlet.{outlet.id}.a{i + 1}",
                        "Current",
                        f"{where}L{i + 1}",
                        f"Outlet {oid} current {line}",
                        "Current",
                        "A",
                        pdu.amps(feed, outlet.phase_w[i], i),
                        "PowerOutlet",
                        line,
                    )
            else:
                line = PHASES[outlet.phase]
                add(
                    f"outlet.{outlet.id}.a",
                    "Current",
                    where,
                    f"Outlet {oid} current",
                    "Current",
                    "A",
                    pdu.amps(feed, outlet.power_w, outlet.phase),
                    "PowerOutlet",
                    line,
                )
                add(
                    f"outlet.{outlet.id}.v",
                    "Voltage",
                    where,
                    f"Outlet {oid} voltage",
                    "Voltage",
                    "V",
                    volts[outlet.phase],
                    "PowerOutlet",
                    LINE_TO_NEUTRAL[outlet.phase],
                )
        return sensors

    def _sensor_body(self, feed: str, sensor: Sensor) -> dict:
        path = f"{self.chassis_path(feed)}/Sensors/{sensor.id}"
        extra: dict[str, object] = {}
        if sensor.electrical:
            extra["ElectricalContext"] = sensor.electrical
        if sensor.reading_type == "Power":
            extra["PowerFactor"] = POWER_FACTOR
        return resource(
            path,
            SENSOR_TYPE,
            sensor.id,
            sensor.name,
            ReadingType=sensor.reading_type,
            Reading=sensor.reading,
            ReadingUnits=sensor.units,
            PhysicalContext=sensor.context,
            Status=status(),
            **extra,
        )

    # --- resources ---------------------------------------------------------------------------

    def resource(self, path: str) -> dict | None:
        pdu = self.pdu
        if path == ROOT:
            return service_root(self.uuid, PowerEquipment="PowerEquipment", Chassis="Chassis")
        if path == POWER_EQUIPMENT:
            return resource(
                path,
                "PowerEquipment.v1_2_3.PowerEquipment",
                "PowerEquipment",
                "Power equipment",
                Status=status(),
                RackPDUs=link(wire.RACK_PDUS_PATH),
            )
        if path == wire.RACK_PDUS_PATH:
            return collection(
                path,
                "PowerDistributionCollection",
                "Rack PDUs",
                [self.unit_path(feed) for feed in pdu.feeds],
            )
        if path == CHASSIS:
            return collection(
                path, "ChassisCollection", "Chassis", [self.chassis_path(f) for f in pdu.feeds]
            )
        for feed in pdu.feeds:
            if path == self.unit_path(feed) or path.startswith(f"{self.unit_path(feed)}/"):
                return self._unit_resource(feed, path)
            if path == self.chassis_path(feed) or path.startswith(f"{self.chassis_path(feed)}/"):
                return self._chassis_resource(feed, path)
        return None

    def _unit_resource(self, feed: str, path: str) -> dict | None:
        pdu, unit = self.pdu, self.unit_path(feed)
        up = pdu.feed_up(feed, self.site.now)
        sensors = self._sensors(feed)
        chassis = self.chassis_path(feed)
        if path == unit:
            capacity = pdu.feeds[feed]
            extra: dict[str, object] = {}
            if capacity:
                extra["PowerCapacityVA"] = round(capacity / POWER_FACTOR)
            return resource(
                path,
                "PowerDistribution.v1_6_0.PowerDistribution",
                self.unit_id(feed),
                f"Rack PDU {feed}",
                EquipmentType="RackPDU",
                Manufacturer=self.flavour.manufacturer,
                Model="Simulated 3-phase rack PDU",
                SerialNumber=f"{pdu.serial}-{self.unit_id(feed)}",
                FirmwareVersion="1.0.0",
                UserLabel=feed,
                Status=status("OK" if up else "Critical"),
                Location={"Placement": {"Rack": pdu.rack}},
                Mains=link(f"{unit}/Mains"),
                Branches=link(f"{unit}/Branches"),
                Outlets=link(f"{unit}/Outlets"),
                Metrics=link(f"{unit}/Metrics"),
                Links={"Chassis": [link(chassis)]},
                **extra,
            )
        if path == f"{unit}/Mains":
            return collection(path, "CircuitCollection", "Mains", [self.mains_path(feed)])
        if path == self.mains_path(feed):
            return self._mains(feed, sensors)
        if path == f"{unit}/Branches":
            members = [f"{unit}/Branches/{self.branch_id(b)}" for b in pdu.branches()]
            return collection(path, "CircuitCollection", "Branches", members)
        for branch in pdu.branches():
            if path == f"{unit}/Branches/{self.branch_id(branch)}":
                return self._branch(feed, branch, sensors)
        if path == f"{unit}/Outlets":
            members = [f"{unit}/Outlets/{self.outlet_id(feed, o)}" for o in pdu.outlets[feed]]
            return collection(path, "OutletCollection", "Outlets", members)
        for outlet in pdu.outlets[feed]:
            if path == f"{unit}/Outlets/{self.outlet_id(feed, outlet)}":
                return self._outlet(feed, outlet, sensors)
        if path == f"{unit}/Metrics":
            return resource(
                path,
                "PowerDistributionMetrics.v1_4_0.PowerDistributionMetrics",
                "Metrics",
                f"Metrics of {feed}",
                PowerWatts=sensors["mains.power"].excerpt(chassis, PowerFactor=POWER_FACTOR),
                EnergykWh=sensors["mains.energy"].excerpt(chassis),
            )
        return None

    def _mains(self, feed: str, sensors: dict[str, Sensor]) -> dict:
        pdu, chassis = self.pdu, self.chassis_path(feed)
        up = pdu.feed_up(feed, self.site.now)
        capacity = pdu.feeds[feed]
        extra: dict[str, object] = {}
        if capacity:
            rated = capacity / (3**0.5 * pdu.voltage * POWER_FACTOR)
            extra["RatedCurrentAmps"] = round(rated, 1)
        voltage = {
            name: sensors[f"mains.v{i + 1}n"].excerpt(chassis)
            for i, name in enumerate(LINE_TO_NEUTRAL)
        } | {
            name: sensors[f"mains.v{i + 1}l"].excerpt(chassis)
            for i, name in enumerate(LINE_TO_LINE)
        }
        current = {
            line: sensors[f"mains.a{i + 1}"].excerpt(chassis) for i, line in enumerate(PHASES)
        }
        current["Neutral"] = sensors["mains.an"].excerpt(chassis)
        return resource(
            self.mains_path(feed),
            "Circuit.v1_9_0.Circuit",
            self.mains_id(),
            f"Mains of {feed}",
            CircuitType="Mains",
            PhaseWiringType="ThreePhase5Wire",
            NominalVoltage="AC400V",
            BreakerState="Normal",
            PowerState="On" if up else "Off",
            Status=status("OK" if up else "Critical"),
            PowerWatts=sensors["mains.power"].excerpt(chassis, PowerFactor=POWER_FACTOR),
            EnergykWh=sensors["mains.energy"].excerpt(chassis),
            FrequencyHz=sensors["mains.hz"].excerpt(chassis),
            PolyPhaseVoltage=voltage,
            PolyPhaseCurrentAmps=current,
            PolyPhasePowerWatts={
                name: sensors[f"mains.w{i + 1}"].excerpt(chassis, PowerFactor=POWER_FACTOR)
                for i, name in enumerate(LINE_TO_NEUTRAL)
            },
            **extra,
        )

    def _branch(self, feed: str, branch: str, sensors: dict[str, Sensor]) -> dict:
        pdu, unit, chassis = self.pdu, self.unit_path(feed), self.chassis_path(feed)
        up = pdu.feed_up(feed, self.site.now)
        outlets = pdu.branch_outlets(feed, branch)
        bid = self.branch_id(branch)
        return resource(
            f"{unit}/Branches/{bid}",
            "Circuit.v1_9_0.Circuit",
            bid,
            f"Branch circuit {bid}",
            CircuitType="Branch",
            PhaseWiringType="ThreePhase5Wire",
            NominalVoltage="AC400V",
            BreakerState="Normal",
            PowerState="On" if up else "Off",
            Status=status(),
            PowerWatts=sensors[f"branch.{branch}.power"].excerpt(chassis, PowerFactor=POWER_FACTOR),
            PolyPhaseCurrentAmps={
                line: sensors[f"branch.{branch}.a{i + 1}"].excerpt(chassis)
                for i, line in enumerate(PHASES)
            },
            PolyPhaseVoltage={
                name: sensors[f"mains.v{i + 1}n"].excerpt(chassis)
                for i, name in enumerate(LINE_TO_NEUTRAL)
            },
            Links={"Outlets": [link(f"{unit}/Outlets/{self.outlet_id(feed, o)}") for o in outlets]},
        )

    def _outlet(self, feed: str, outlet: Outlet, sensors: dict[str, Sensor]) -> dict:
        pdu, unit, chassis = self.pdu, self.unit_path(feed), self.chassis_path(feed)
        oid = self.outlet_id(feed, outlet)
        path = f"{unit}/Outlets/{oid}"
        live = pdu.outlet_live(feed, outlet, self.site.now)
        key = f"outlet.{outlet.id}"
        readings: dict[str, object]
        if outlet.polyphase:
            # DSP0266 (Outlet): no Voltage/CurrentAmps on a 4-wire or greater outlet; per line.
            readings = {
                "OutletType": "BusConnection",
                "PhaseWiringType": "ThreePhase5Wire",
                "NominalVoltage": "AC400V",
                "PolyPhaseCurrentAmps": {
                    line: sensors[f"{key}.a{i + 1}"].excerpt(chassis)
                    for i, line in enumerate(PHASES)
                },
                "PolyPhaseVoltage": {
                    name: sensors[f"mains.v{i + 1}n"].excerpt(chassis)
                    for i, name in enumerate(LINE_TO_NEUTRAL)
                },
                "ElectricalConsumerNames": [outlet.server.serial] if outlet.server else [],
            }
        else:
            readings = {
                "OutletType": "IEC_60320_C19",
                "PhaseWiringType": "OnePhase3Wire",
                "NominalVoltage": "AC230V",
                "ElectricalContext": LINE_TO_NEUTRAL[outlet.phase],
                "RatedCurrentAmps": UTILITY_OUTLET_A,
                "Voltage": sensors[f"{key}.v"].excerpt(chassis),
                "CurrentAmps": sensors[f"{key}.a"].excerpt(chassis),
            }
        return resource(
            path,
            "Outlet.v1_4_4.Outlet",
            oid,
            f"Outlet {oid}, branch {self.branch_id(outlet.branch)}",
            VoltageType="AC",
            PowerState="On" if live else "Off",
            PowerEnabled=True,
            PowerCycleDelaySeconds=5,
            Status=status(),
            PowerWatts=sensors[f"{key}.power"].excerpt(chassis, PowerFactor=POWER_FACTOR),
            EnergykWh=sensors[f"{key}.energy"].excerpt(chassis),
            Links={"BranchCircuit": link(f"{unit}/Branches/{self.branch_id(outlet.branch)}")},
            Actions={
                f"#{POWER_CONTROL}": {
                    "target": f"{path}/Actions/{POWER_CONTROL}",
                    "PowerState@Redfish.AllowableValues": OUTLET_STATES,
                }
            },
            **readings,
        )

    def _chassis_resource(self, feed: str, path: str) -> dict | None:
        chassis = self.chassis_path(feed)
        up = self.pdu.feed_up(feed, self.site.now)
        if path == chassis:
            return resource(
                path,
                "Chassis.v1_28_0.Chassis",
                chassis.rsplit("/", 1)[-1],
                f"Chassis of rack PDU {feed}",
                ChassisType="Component",
                Manufacturer=self.flavour.manufacturer,
                Model="Simulated 3-phase rack PDU",
                SerialNumber=f"{self.pdu.serial}-{self.unit_id(feed)}",
                Status=status("OK" if up else "Critical"),
                Location={"Placement": {"Rack": self.pdu.rack}},
                Sensors=link(f"{path}/Sensors"),
                Links={"ManagedBy": [link(MANAGER)]},
            )
        sensors = self._sensors(feed)
        if path == f"{chassis}/Sensors":
            members = [f"{path}/{s.id}" for s in sensors.values()]
            return collection(path, "SensorCollection", f"Sensors of {feed}", members)
        for sensor in sensors.values():
            if path == f"{chassis}/Sensors/{sensor.id}":
                return self._sensor_body(feed, sensor)
        return None

    # --- actions -----------------------------------------------------------------------------

    def post(self, path: str, body: dict) -> Reply:
        """``Outlet.PowerControl``: ``{"PowerState": "On" | "Off" | "PowerCycle"}``."""
        with self.site.lock:
            for feed in self.pdu.feeds:
                for outlet in self.pdu.outlets[feed]:
                    target = f"{self.unit_path(feed)}/Outlets/{self.outlet_id(feed, outlet)}"
                    if path != f"{target}/Actions/{POWER_CONTROL}":
                        continue
                    state = body.get("PowerState")
                    if state not in OUTLET_STATES:
                        raise HttpError(
                            400,
                            f"PowerState must be one of {', '.join(OUTLET_STATES)}",
                            "ActionParameterValueNotInList"
                            if state is not None
                            else "ActionParameterMissing",
                        )
                    self.pdu.power_control(feed, outlet.id, str(state), self.site.now)
                    return 204, {}, {}
        return super().post(path, body)
