"""A component's firmware version is reported only when all its entries agree: one tray of 18
left on the old image must not pass verification. The mapping is a pure function of the
FirmwareInventory entries (the simulator serves one entry per component, so it is tested on
entries as a vendor with an entry per tray lists them)."""

from __future__ import annotations

import logging

from factory.siteagent.commands import MIXED_PREFIX, inventory_versions
from factory.wire import FirmwareComponent

TRAY = FirmwareComponent.ACCELERATOR_TRAY


def trays(versions: list[str]) -> list[dict]:
    return [
        {
            "@odata.id": f"/redfish/v1/UpdateService/FirmwareInventory/Tray{n}",
            "Id": f"Tray{n}",
            "Name": f"Accelerator tray {n} firmware",
            "SoftwareId": "vendor-accelerator-tray",
            "Version": version,
            "Status": {"State": "Enabled"},
        }
        for n, version in enumerate(versions)
    ]


def test_trays_that_agree_report_their_version():
    running, _ = inventory_versions(trays(["2.4.0"] * 18))
    assert running == {TRAY: "2.4.0"}


def test_one_tray_left_behind_is_mixed_and_matches_no_version():
    running, _ = inventory_versions(trays(["2.4.0"] * 17 + ["2.3.1"]))
    assert running[TRAY] == f"{MIXED_PREFIX}2.3.1,2.4.0"
    assert running[TRAY] != "2.4.0"


def test_the_standby_bank_is_mixed_too_when_its_entries_differ():
    entries = [
        {"Id": "BIOS_Backup", "SoftwareId": "x-bios", "Version": v, "Status": {}}
        for v in ("1.0", "1.1")
    ]
    _, standby = inventory_versions(entries)
    assert standby[FirmwareComponent.BIOS] == f"{MIXED_PREFIX}1.0,1.1"


def test_entries_that_name_no_component_or_several_are_logged(caplog):
    entries = [
        {"@odata.id": "/fw/CPLD", "Id": "CPLD", "Name": "Complex logic", "Version": "7"},
        {"@odata.id": "/fw/Odd", "Id": "SwitchPower", "Name": "switch power", "Version": "3"},
    ]
    with caplog.at_level(logging.WARNING, logger="factory.siteagent.commands"):
        running, _ = inventory_versions(entries)
    assert running == {FirmwareComponent.SWITCH_TRAY: "3"}  # the first guess, as before
    text = caplog.text
    assert "/fw/CPLD names no component" in text
    assert "/fw/Odd could be switch-tray, power-shelf" in text
