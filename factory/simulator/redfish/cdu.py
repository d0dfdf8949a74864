"""The site's simulated coolant distribution unit."""

from __future__ import annotations

from factory import wire
from factory.simulator.devices import Cdu, Site
from factory.simulator.redfish.common import (
    ROOT,
    Tree,
    collection,
    link,
    resource,
    service_root,
    status,
)
from factory.wire import OEM, ReportKey


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
            return resource(
                path,
                "ThermalEquipment.v1_2_0.ThermalEquipment",
                "ThermalEquipment",
                "Thermal equipment",
                Status=status(),
                CDUs=link(f"{base}/CDUs"),
            )
        if path == f"{base}/CDUs":
            return collection(path, "CoolingUnitCollection", "CDUs", [wire.CDU_PATH])
        if path == wire.CDU_PATH:
            hot = cdu.supply_c > cdu.nominal_c + 5
            return resource(
                path,
                "CoolingUnit.v1_5_0.CoolingUnit",
                "1",
                f"CDU {cdu.serial}",
                EquipmentType="CDU",
                Status=status("Warning" if hot else "OK"),
                CoolingCapacityWatts=2_000_000,
                Oem={
                    OEM: {
                        ReportKey.SUPPLY_TEMPERATURE: round(cdu.supply_c, 2),
                        ReportKey.HEAT_LOAD: round(cdu.heat_w, 1),
                    }
                },
            )
        return None
