"""A rack's simulated PDUs."""

from __future__ import annotations

from factory import wire
from factory.simulator.devices import RackPdu, Site
from factory.simulator.redfish.common import (
    ROOT,
    Tree,
    collection,
    link,
    resource,
    service_root,
    status,
)


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
                [f"{path}/{feed}" for feed in pdu.feeds],
            )
        for feed in pdu.feeds:
            unit = f"{wire.RACK_PDUS_PATH}/{feed}"
            up = pdu.feed_up(feed, now)
            if path == unit:
                return resource(
                    path,
                    "PowerDistribution.v1_6_0.PowerDistribution",
                    feed,
                    f"Rack PDU {feed}",
                    EquipmentType="RackPDU",
                    Model="Simulated PDU",
                    SerialNumber=f"{pdu.serial}-{feed}",
                    Status=status("OK" if up else "Critical"),
                    Mains=link(f"{unit}/Mains"),
                    Metrics=link(f"{unit}/Metrics"),
                )
            if path == f"{unit}/Mains":
                return collection(path, "CircuitCollection", "Mains", [f"{unit}/{wire.PDU_MAINS}"])
            if path == f"{unit}/{wire.PDU_MAINS}":
                return resource(
                    path,
                    "Circuit.v1_9_0.Circuit",
                    "AC1",
                    f"Mains of {feed}",
                    CircuitType="Mains",
                    PhaseWiringType="ThreePhase5Wire",
                    NominalVoltage="AC400V",
                    PowerState="On" if up else "Off",
                    Status=status("OK" if up else "Critical"),
                    PowerWatts={"Reading": round(pdu.load_w[feed], 1)},
                    Voltage={"Reading": pdu.voltage if up else 0.0},
                )
            if path == f"{unit}/Metrics":
                return resource(
                    path,
                    "PowerDistributionMetrics.v1_4_0.PowerDistributionMetrics",
                    "Metrics",
                    f"Metrics of {feed}",
                    PowerWatts={"Reading": round(pdu.load_w[feed], 1)},
                    EnergykWh={"Reading": round(pdu.energy_j[feed] / 3.6e6, 3)},
                )
        return None
