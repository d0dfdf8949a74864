"""The simulated BMC's standard hardware resources: chassis and trays, sensors per vendor
flavour, leak detection and leak injection, firmware inventory per component with targeted
SimpleUpdate, the origin of each fault, and the contoso flavour's own paths and OEM actions.

In-process ``BmcTree``s on a site advanced by hand (pure: no Django, no database), and one
``SiteServer`` on free ports for what goes over HTTP.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from factory import wire
from factory.simulator.__main__ import demo_layout
from factory.simulator.devices import Site, build_site
from factory.simulator.faults import FaultInjector, FaultRates
from factory.simulator.hardware import SPECS
from factory.simulator.redfish import BmcTree, HttpError
from factory.simulator.server import SiteServer
from factory.wire import EventKind, FirmwareComponent, OemAction, SystemOem

ROOT = wire.REDFISH_ROOT
INVENTORY = f"{ROOT}/UpdateService/FirmwareInventory"


def site_of(family: str = "trn3", flavour: str = "factory", **timing: float) -> Site:
    """A site of one UltraServer in the given flavour (``timing``: build_site's seconds and
    rates)."""
    layout = demo_layout(1, 1, family)
    layout["racks"][0]["servers"][0]["flavour"] = flavour
    return build_site(layout, seed=1, **timing)


def tree_of(site: Site) -> BmcTree:
    return BmcTree(site, next(iter(site.bmcs.values())))


def members(tree: BmcTree, path: str) -> list[str]:
    return [m["@odata.id"] for m in tree.get(path)["Members"]]


def system_of(tree: BmcTree) -> dict:
    """The system as an agent finds it: the first member of the Systems collection."""
    return tree.get(members(tree, f"{ROOT}/Systems")[0])


def finish(site: Site, seconds: float = 20.0) -> None:
    """Past the default flash time: a SimpleUpdate's task is done."""
    site.advance(seconds)


# --- chassis and sensors ---------------------------------------------------------------------


@pytest.mark.parametrize("family", ["trn3", "trn2", "gb300"])
def test_every_tray_is_a_chassis_inside_the_ultraserver_with_its_chips(family):
    tree = tree_of(site_of(family))
    spec = SPECS[family]
    chassis = tree.get(tree.chassis_path)
    contained = [c["@odata.id"] for c in chassis["Links"]["Contains"]]
    assert len(contained) == spec.trays + spec.switch_trays + 1
    assert members(tree, f"{ROOT}/Chassis") == [tree.chassis_path, *contained]
    chips = []
    for path in contained:
        part = tree.get(path)
        assert part["Links"]["ContainedBy"] == {"@odata.id": tree.chassis_path}
        chips += [p["@odata.id"] for p in part["Links"].get("Processors", [])]
    # Every chip sits in exactly one tray, and says so.
    assert chips == members(tree, f"{tree.system_path}/Processors")
    chip = tree.get(chips[5])
    assert chip["Links"]["Chassis"] == {"@odata.id": tree.tray_paths[spec.tray_of(5)]}
    assert [tree.get(p)["ChassisType"] for p in contained][-1] == "Shelf"


@pytest.mark.parametrize(
    ("flavour", "tray_temp", "inlet", "power"),
    [
        ("factory", "Tray3Temp", "CoolantInletTemp", "ChassisPower"),
        ("contoso", "TEMP_SLED3", "TEMP_COOLANTINLET", "POWER_CHASSIS"),
    ],
)
def test_sensors_are_named_by_the_flavour_and_read_the_hardware(flavour, tray_temp, inlet, power):
    site = site_of(flavour=flavour)
    tree = tree_of(site)
    site.advance(5)
    sensors = f"{tree.chassis_path}/Sensors"
    ids = [p.rsplit("/", 1)[-1] for p in members(tree, sensors)]
    assert {tray_temp, inlet, power} <= set(ids)
    # Each tray; supply, return, flow; power, energy; the power shelf's output.
    assert len(ids) == SPECS["trn3"].trays + 6
    bodies = {i: tree.get(f"{sensors}/{i}") for i in ids}
    assert all(b["Id"] == i and "Reading" in b and b["ReadingUnits"] for i, b in bodies.items())
    bmc = tree.bmc
    hottest_in_tray3 = max(c.temp_c for c in bmc.tray_chips(3))
    assert bodies[tray_temp]["Reading"] == pytest.approx(hottest_in_tray3, abs=0.01)
    assert bodies[tray_temp]["ReadingUnits"] == "Cel"
    assert bodies[inlet]["Reading"] == pytest.approx(bmc.coolant_c)
    assert bodies[power]["Reading"] == pytest.approx(bmc.power_w, abs=0.01) and bmc.power_w > 0
    # The coolant leaves warmer than it came, by the heat over the flow (HARDWARE.md: 10-20 K).
    loop = tree.get(f"{tree.chassis_path}/ThermalSubsystem/CoolantConnectors/Loop")
    rise = loop["ReturnTemperatureCelsius"]["Reading"] - loop["SupplyTemperatureCelsius"]["Reading"]
    assert 0 < rise <= 15.0
    assert loop["SupplyTemperatureCelsius"]["DataSourceUri"] == f"{sensors}/{inlet}"
    env = tree.get(f"{tree.chassis_path}/EnvironmentMetrics")
    assert env["PowerWatts"]["Reading"] == pytest.approx(bmc.power_w, abs=0.1)
    assert env["EnergyJoules"]["Reading"] == pytest.approx(bmc.energy_j, abs=0.1)
    assert bmc.energy_j > 0


def test_the_power_shelf_units_share_the_load_and_a_warm_supply_warns():
    site = site_of()
    tree = tree_of(site)
    site.advance(3)
    supplies = members(tree, f"{tree.chassis_path}/PowerSubsystem/PowerSupplies")
    assert len(supplies) == SPECS["trn3"].power_supplies
    out = sum(tree.get(f"{p}/Metrics")["OutputPowerWatts"]["Reading"] for p in supplies)
    assert out == pytest.approx(tree.bmc.power_w, rel=1e-3)
    unit = tree.get(f"{supplies[0]}/Metrics")
    assert unit["InputPowerWatts"]["Reading"] > unit["OutputPowerWatts"]["Reading"]
    # A coolant excursion at the CDU (+18 K) puts the supply above HARDWARE.md's 45 °C.
    tree.bmc.coolant_c = 48.0
    inlet = tree.get(f"{tree.chassis_path}/Sensors/CoolantInletTemp")
    assert (inlet["Reading"], inlet["Status"]["Health"]) == (48.0, "Warning")


def test_a_tray_powers_off_on_its_own():
    site = site_of()
    tree = tree_of(site)
    site.advance(2)
    tray = tree.tray_paths[2]
    status, _, _ = tree.post(f"{tray}/Actions/Chassis.Reset", {"ResetType": "ForceOff"})
    assert status == 204
    site.advance(1)
    assert tree.get(tray)["PowerState"] == "Off"
    assert all(c.power_w == 0 for c in tree.bmc.tray_chips(2))
    assert all(c.power_w > 0 for c in tree.bmc.tray_chips(3))
    assert tree.get(tree.system_path)["PowerState"] == "On"
    with pytest.raises(HttpError) as refused:
        tree.post(f"{tray}/Actions/Chassis.Reset", {"ResetType": "ForceRestart"})
    assert refused.value.status == 400
    tree.post(f"{tray}/Actions/Chassis.Reset", {"ResetType": "On"})
    site.advance(1)
    assert all(c.power_w > 0 for c in tree.bmc.tray_chips(2))


# --- leaks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["factory", "contoso"])
def test_a_leak_makes_its_tray_detector_and_the_whole_server_critical(flavour):
    site = site_of(flavour=flavour)
    tree = tree_of(site)
    serial = tree.bmc.serial
    detection = f"{tree.chassis_path}/ThermalSubsystem/LeakDetection"
    assert tree.get(detection)["Status"]["Health"] == "OK"
    assert system_of(tree)["Status"]["Health"] == "OK"
    fault = site.inject(EventKind.LEAK, serial, chip=13)  # chip 13 sits in tray 3
    detector = tree.origin_of(fault)
    assert detector == tree.leak_detector_path(3)
    assert detector in members(tree, f"{tree.tray_paths[3]}/LeakDetectors")
    body = tree.get(detector)
    assert (body["DetectorState"], body["Status"]["Health"]) == ("Critical", "Critical")
    assert tree.get(tree.leak_detector_path(4))["DetectorState"] == "OK"
    groups = tree.get(detection)["LeakDetectorGroups"]
    states = {
        g["Detectors"][0]["DataSourceUri"]: g["Detectors"][0]["DetectorState"] for g in groups
    }
    assert states[detector] == "Critical"
    assert sum(s == "Critical" for s in states.values()) == 1
    assert tree.get(detection)["Status"]["Health"] == "Critical"
    assert tree.get(tree.tray_paths[3])["Status"]["Health"] == "Critical"
    assert tree.get(tree.tray_paths[4])["Status"]["Health"] == "OK"
    assert tree.get(tree.chassis_path)["Status"]["Health"] == "Critical"
    assert system_of(tree)["Status"]["Health"] == "Critical"
    # Not a passing thing: it leaks until repaired.
    site.advance(600)
    assert tree.get(detector)["DetectorState"] == "Critical"
    tree.bmc.clear_leak()
    assert tree.get(detector)["DetectorState"] == "OK"
    assert system_of(tree)["Status"]["Health"] == "OK"
    assert tree.get(detection)["Status"]["Health"] == "OK"


def test_a_leak_names_its_tray_or_defaults_to_the_first_and_out_of_range_is_refused():
    site = site_of()
    tree = tree_of(site)
    bmc = tree.bmc
    site.inject(EventKind.LEAK, bmc.serial)
    assert bmc.leaks == {0}
    bmc.clear_leak(0)
    events = len(bmc.events)
    with pytest.raises(IndexError):
        site.inject(EventKind.LEAK, bmc.serial, chip=SPECS["trn3"].chips)
    assert len(bmc.events) == events and not bmc.leaks  # nothing recorded
    site.inject(EventKind.LEAK, bmc.serial, chip=0)
    site.inject(EventKind.LEAK, bmc.serial, chip=143)
    assert bmc.leaks == {0, 35}
    bmc.clear_leak(35)
    assert bmc.leaks == {0}


def test_hardware_md_gives_no_leak_rate_so_none_is_drawn_unless_one_is_set():
    assert FaultRates().leak == 0.0
    quiet = FaultInjector(3, "x", FaultRates(scale=1e6))
    assert not [
        f for f in quiet.server_faults(144, 4, 86_400.0, trays=36) if f.kind == EventKind.LEAK
    ]
    # The other draws are unchanged by the tray count (a zero rate draws nothing).
    a = FaultInjector(3, "x", FaultRates(scale=1000)).server_faults(144, 4, 3600.0)
    b = FaultInjector(3, "x", FaultRates(scale=1000)).server_faults(144, 4, 3600.0, trays=36)
    assert a == b
    leaky = FaultRates(leak=0.01)
    drawn = [
        f
        for f in FaultInjector(3, "x", leaky).server_faults(144, 4, 100 * 86_400.0, trays=36)
        if f.kind == EventKind.LEAK
    ]
    assert 20 < len(drawn) < 60  # 36 trays x 100 days x 0.01 = 36 expected
    assert all(0 <= f.tray < 36 for f in drawn)


# --- origin of each fault ----------------------------------------------------------------------


def test_each_fault_names_the_resource_it_is_about():
    site = site_of(flavour="contoso")
    tree = tree_of(site)
    serial = tree.bmc.serial
    system = tree.system_path
    cases = {
        (EventKind.CHIP_FAILURE, 7, None): f"{system}/Processors/Chip7",
        (EventKind.HBM_FAILURE, 8, None): f"{system}/Memory/HBM8",
        (EventKind.ECC_STORM, 9, None): f"{system}/Memory/HBM9",
        (EventKind.LINK_DOWN, 10, 2): f"{system}/Processors/Chip10/Ports/Link2",
        (EventKind.LINK_FLAP, 11, 1): f"{system}/Processors/Chip11/Ports/Link1",
        (EventKind.LEAK, 20, None): tree.leak_detector_path(5),
    }
    for (kind, chip, link), origin in cases.items():
        fault = site.inject(kind, serial, chip=chip, link=link, duration_s=5)
        assert tree.origin_of(fault) == origin
        assert tree.get(origin)["@odata.id"] == origin  # a resource the BMC serves
    other = site.inject(EventKind.FEED_LOSS, next(iter(site.pdus)))
    assert tree.origin_of(other) is None


# --- firmware inventory ------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["factory", "contoso"])
def test_the_firmware_inventory_lists_every_component_with_its_version(flavour):
    site = site_of(flavour=flavour, flash_failure_rate=0.0)
    tree = tree_of(site)
    entries = [tree.get(p) for p in members(tree, INVENTORY)]
    assert len(entries) == len(FirmwareComponent)  # no standby bank before the first flash
    assert all(e["Version"] and e["Updateable"] and e["SoftwareId"] for e in entries)
    assert all(e["RelatedItem"] and e["Status"]["State"] == "Enabled" for e in entries)
    versions = {e["Id"]: e["Version"] for e in entries}
    bios = tree.naming.inventory[FirmwareComponent.BIOS]
    assert versions[bios] == system_of(tree)["BiosVersion"] == "2026.09.1"
    trays = tree.get(tree.inventory_path(FirmwareComponent.ACCELERATOR_TRAY))["RelatedItem"]
    assert [t["@odata.id"] for t in trays] == tree.tray_paths
    # After a flash of the system firmware the old bank is listed as the standby image.
    image = wire.firmware_image_uri("https://artifacts", "aws-neuron", "2026.11.1")
    tree.post(wire.SIMPLE_UPDATE_PATH, {"ImageURI": image})
    finish(site)
    entries = {e["Id"]: e for e in (tree.get(p) for p in members(tree, INVENTORY))}
    standby = entries[tree.naming.inactive_bios]
    assert (standby["Version"], standby["Status"]["State"]) == ("2026.09.1", "StandbySpare")
    assert entries[bios]["Version"] == system_of(tree)["BiosVersion"] == "2026.11.1"
    oem = system_of(tree)["Oem"][tree.flavour.oem]
    if flavour == "factory":
        assert oem[SystemOem.INACTIVE_FIRMWARE_VERSION] == "2026.09.1"
    else:  # another vendor's BMC: only FirmwareInventory tells of the standby bank
        assert SystemOem.INACTIVE_FIRMWARE_VERSION not in oem


def test_simple_update_flashes_the_targets_only():
    site = site_of(flash_failure_rate=0.0)
    tree = tree_of(site)
    bmc = tree.bmc
    before = bmc.firmware_inventory()
    image = wire.firmware_image_uri("https://artifacts", "vendor", "28.43.1000")
    nic = tree.inventory_path(FirmwareComponent.NIC)
    status, _, headers = tree.post(wire.SIMPLE_UPDATE_PATH, {"ImageURI": image, "Targets": [nic]})
    assert status == 202 and headers["Location"]
    assert bmc.firmware_inventory() == before  # not before the task is done
    finish(site)
    after = bmc.firmware_inventory()
    assert after[FirmwareComponent.NIC] == "28.43.1000"
    assert {k: v for k, v in after.items() if k != FirmwareComponent.NIC} == {
        k: v for k, v in before.items() if k != FirmwareComponent.NIC
    }
    assert tree.get(nic)["Version"] == "28.43.1000"
    assert bmc.firmware_inactive == ""  # the system firmware's banks were not touched
    # A resource the firmware runs on names it too: a tray, the power shelf.
    image = wire.firmware_image_uri("https://artifacts", "vendor", "1.10.0")
    tree.post(
        wire.SIMPLE_UPDATE_PATH,
        {"ImageURI": image, "Targets": [tree.tray_paths[0], tree.power_shelf_path]},
    )
    finish(site)
    inventory = bmc.firmware_inventory()
    assert inventory[FirmwareComponent.ACCELERATOR_TRAY] == "1.10.0"
    assert inventory[FirmwareComponent.POWER_SHELF] == "1.10.0"
    assert inventory[FirmwareComponent.BIOS] == "2026.09.1"
    # The system names its firmware: the A/B banks, as with no Targets.
    image = wire.firmware_image_uri("https://artifacts", "aws-neuron", "2026.12.0")
    tree.post(wire.SIMPLE_UPDATE_PATH, {"ImageURI": image, "Targets": [tree.system_path]})
    finish(site)
    assert (bmc.firmware_active, bmc.firmware_inactive) == ("2026.12.0", "2026.09.1")
    assert system_of(tree)["BiosVersion"] == "2026.12.0"


@pytest.mark.parametrize(
    "targets",
    [["/redfish/v1/UpdateService/FirmwareInventory/Toaster"], "not-a-list", [3], [f"{ROOT}/x"]],
)
def test_simple_update_refuses_targets_it_does_not_have(targets):
    site = site_of()
    tree = tree_of(site)
    image = wire.firmware_image_uri("https://artifacts", "vendor", "9.9")
    with pytest.raises(HttpError) as refused:
        tree.post(wire.SIMPLE_UPDATE_PATH, {"ImageURI": image, "Targets": targets})
    assert refused.value.status == 400
    assert "Targets" in refused.value.message
    assert not tree.bmc.tasks


def test_a_switchless_system_has_no_switch_tray_firmware():
    tree = tree_of(site_of("trn2"))
    components = set(tree.bmc.firmware_inventory())
    assert components == set(FirmwareComponent) - {FirmwareComponent.SWITCH_TRAY}
    assert len(members(tree, INVENTORY)) == len(components)


def test_a_layout_may_give_component_versions():
    from factory.simulator.devices import Bmc

    bmc = Bmc("X1", "trn3", seed=1, rates=FaultRates(), components={"nic": "30.1.0"})
    assert bmc.firmware_inventory()[FirmwareComponent.NIC] == "30.1.0"
    assert bmc.firmware_inventory()[FirmwareComponent.BMC] == "2.14.0"


# --- the contoso flavour -------------------------------------------------------------------------


def test_contoso_serves_its_own_paths_and_oem_actions():
    site = site_of(flavour="contoso")
    tree = tree_of(site)
    system = system_of(tree)
    assert system["@odata.id"] != wire.SYSTEM_PATH  # found from the collection, not assumed
    assert system["Manufacturer"] == "Contoso Hardware"
    oem_actions = system["Actions"]["Oem"]
    assert set(oem_actions) == {f"#Contoso.{a}" for a in OemAction}
    drain = oem_actions["#Contoso.Drain"]["target"]
    assert drain == f"{system['@odata.id']}/Actions/Oem/Contoso.Drain"
    assert set(system["Oem"]) == {"Contoso"}
    status, state, _ = tree.post(drain, {})
    assert status == 200 and state[wire.HardwareState.DRAINED] is True
    assert system_of(tree)["Oem"]["Contoso"][SystemOem.DRAINED] is True
    # The factory's OEM paths do not exist on it.
    with pytest.raises(HttpError) as missing:
        tree.post(wire.oem_action_path(OemAction.DRAIN), {})
    assert missing.value.status == 404
    chassis = members(tree, f"{ROOT}/Chassis")[0]
    assert tree.get(chassis)["Manufacturer"] == "Contoso Hardware"
    # Its MetricReport names chips under its own system; the wire contract still finds them.
    site.advance(1)
    report = tree.get(wire.CHIP_REPORT_PATH)
    first = report["MetricValues"][0]["MetricProperty"]
    assert first.startswith(f"{system['@odata.id']}/Processors/Chip0/")
    assert wire.chip_index(first) == 0


def test_the_factory_flavour_keeps_the_wire_contracts_paths():
    tree = tree_of(site_of())
    system = system_of(tree)
    assert system["@odata.id"] == wire.SYSTEM_PATH
    for action in OemAction:
        assert system["Actions"]["Oem"][f"#{wire.OEM}.{action}"]["target"] == (
            wire.oem_action_path(action)
        )
    assert system["Actions"]["#ComputerSystem.Reset"]["target"] == wire.RESET_PATH
    assert members(tree, f"{wire.SYSTEM_PATH}/Processors")[3] == wire.chip_path(3)


# --- over HTTP -------------------------------------------------------------------------------


def test_leaks_and_sensors_over_http():
    site = site_of(flavour="contoso")
    server = SiteServer(site, tick_seconds=0.05).start()
    auth = "Basic " + base64.b64encode(b"admin:factory-sim").decode()

    def get(url: str) -> dict:
        request = urllib.request.Request(url, headers={"Authorization": auth})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)

    try:
        url = next(d["url"] for d in server.devices if d["kind"] == wire.DeviceKind.BMC)
        serial = next(iter(site.bmcs))
        chassis = get(f"{url}{ROOT}/Chassis")["Members"][0]["@odata.id"]
        sensors = get(f"{url}{chassis}/Sensors")
        assert f"{chassis}/Sensors/TEMP_SLED0" in [m["@odata.id"] for m in sensors["Members"]]
        inject = urllib.request.Request(
            f"{server.control_url}/sim/faults",
            data=json.dumps({"kind": EventKind.LEAK, "target": serial, "chip": 42}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(inject, timeout=5) as response:
            assert response.status == 201
        thermal = get(f"{url}{chassis}")["ThermalSubsystem"]["@odata.id"]
        detection = get(f"{url}{thermal}")["LeakDetection"]["@odata.id"]
        critical = [
            d["DataSourceUri"]
            for g in get(f"{url}{detection}")["LeakDetectorGroups"]
            for d in g["Detectors"]
            if d["DetectorState"] == "Critical"
        ]
        assert critical == [f"{ROOT}/Chassis/Sled10/LeakDetectors/Manifold"]  # chip 42: tray 10
        assert get(f"{url}{critical[0]}")["Status"]["Health"] == "Critical"
        bad = urllib.request.Request(
            f"{server.control_url}/sim/faults",
            data=json.dumps({"kind": EventKind.LEAK, "target": serial, "chip": 999}).encode(),
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=5)
        assert refused.value.code == 400
    finally:
        server.stop()
