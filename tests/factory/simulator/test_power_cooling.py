"""The rack PDUs and the CDU in standard Redfish (DMTF's public-pdu and public-cooling-unit
shapes): outlets, branches, per-phase mains, outlet power control, coolant supply and return,
leak detection, where a fault shows (``origin_of``), and the agent's polls of both against a
live SiteServer in two vendors' namings. Pure: no Django, no database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from factory import wire
from factory.simulator.__main__ import demo_layout
from factory.simulator.devices import (
    COOLANT_DENSITY_KG_M3,
    COOLANT_SPECIFIC_HEAT_KJ,
    EXCURSION_RISE_K,
    OUTLET_CYCLE_S,
    POWER_FACTOR,
    SPARE_OUTLETS,
    Site,
    build_site,
)
from factory.simulator.faults import FaultRates
from factory.simulator.flavours import DEFAULT, VENDOR_B, Flavour
from factory.simulator.redfish import CduTree, PduTree
from factory.simulator.server import SiteServer
from factory.siteagent.devices import Device, poll_cdu, poll_pdu
from factory.wire import DeviceKind, EventKind, FeedReading, ReportKey

AUTH = ("admin", "factory-sim")
QUIET = FaultRates(scale=0.0)  # no drawn faults: every fault here is injected


def quiet_site(racks: int = 1, servers: int = 2) -> Site:
    site = build_site(demo_layout(racks, servers), seed=1, rates=QUIET)
    for _ in range(3):
        site.advance(1.0)
    return site


def pdu_tree(site: Site) -> PduTree:
    return PduTree(site, next(iter(site.pdus.values())))


def cdu_tree(site: Site) -> CduTree:
    return CduTree(site, next(iter(site.cdus.values())))


def reading(excerpt: dict) -> float:
    return float(excerpt["Reading"])


def outlets(tree: PduTree, feed: str) -> list[dict]:
    listing = tree.get(f"{tree.unit_path(feed)}/Outlets")
    return [tree.get(m["@odata.id"]) for m in listing["Members"]]


# --- the PDU ---------------------------------------------------------------------------------


def test_each_feed_has_a_tap_per_server_plus_spares_on_branches():
    site = quiet_site(servers=3)
    tree = pdu_tree(site)
    feed = sorted(tree.pdu.feeds)[0]
    found = outlets(tree, feed)
    assert len(found) == 3 + SPARE_OUTLETS
    taps = [o for o in found if o["PhaseWiringType"] == "ThreePhase5Wire"]
    spares = [o for o in found if o["PhaseWiringType"] == "OnePhase3Wire"]
    assert sorted(c for o in taps for c in o["ElectricalConsumerNames"]) == sorted(site.bmcs)
    assert len(spares) == SPARE_OUTLETS
    # A 5-wire outlet reads per line; a 3-wire one has Voltage and CurrentAmps (DSP0266 Outlet).
    assert all("CurrentAmps" not in o and len(o["PolyPhaseCurrentAmps"]) == 3 for o in taps)
    assert all(reading(o["Voltage"]) > 220 and "CurrentAmps" in o for o in spares)
    for outlet in found:
        branch = tree.get(outlet["Links"]["BranchCircuit"]["@odata.id"])
        assert branch["CircuitType"] == "Branch"
        assert {"@odata.id": outlet["@odata.id"]} in branch["Links"]["Outlets"]
        assert outlet["Actions"]["#Outlet.PowerControl"]["target"].endswith(
            "/Actions/Outlet.PowerControl"
        )


def test_mains_is_three_phase_balanced_and_sums_its_outlets():
    site = quiet_site(servers=2)
    tree = pdu_tree(site)
    for feed in tree.pdu.feeds:
        mains = tree.get(tree.mains_path(feed))
        assert mains["PowerState"] == "On" and mains["Status"]["Health"] == "OK"
        lines = [reading(mains["PolyPhaseCurrentAmps"][f"Line{n}"]) for n in (1, 2, 3)]
        volts = [reading(mains["PolyPhaseVoltage"][f"Line{n}ToNeutral"]) for n in (1, 2, 3)]
        total = reading(mains["PowerWatts"])
        assert total > 50_000  # two UltraServers, each on two feeds
        # Balanced: each line within a few percent of a third, current = P / (V × PF).
        assert max(lines) / min(lines) < 1.05
        for amps, v, watts in zip(
            lines,
            volts,
            [reading(mains["PolyPhasePowerWatts"][f"Line{n}ToNeutral"]) for n in (1, 2, 3)],
            strict=True,
        ):
            assert 235 < v < 245  # 415 V line to line
            assert amps == pytest.approx(watts / (v * POWER_FACTOR), rel=1e-3)
        assert reading(mains["PolyPhaseCurrentAmps"]["Neutral"]) < 0.1 * max(lines)
        # The outlets add up to the mains, line by line too.
        found = outlets(tree, feed)
        assert sum(reading(o["PowerWatts"]) for o in found) == pytest.approx(total, abs=0.5)
        for n in (1, 2, 3):
            line = f"Line{n}"
            by_outlet = sum(
                reading(o["PolyPhaseCurrentAmps"][line])
                for o in found
                if "PolyPhaseCurrentAmps" in o
            )
            assert by_outlet == pytest.approx(lines[n - 1], abs=0.05)
        branches = tree.get(f"{tree.unit_path(feed)}/Branches")["Members"]
        assert sum(reading(tree.get(b["@odata.id"])["PowerWatts"]) for b in branches) == (
            pytest.approx(total, abs=0.5)
        )
        metrics = tree.get(f"{tree.unit_path(feed)}/Metrics")
        assert reading(metrics["PowerWatts"]) == pytest.approx(total, abs=0.01)
        # Every excerpt cites a sensor of the PDU's chassis that reads the same.
        sensor = tree.get(mains["PolyPhaseCurrentAmps"]["Line1"]["DataSourceUri"])
        assert sensor["ReadingType"] == "Current" and sensor["ReadingUnits"] == "A"
        assert sensor["Reading"] == lines[0] and sensor["ElectricalContext"] == "Line1"
        listed = tree.get(f"{tree.chassis_path(feed)}/Sensors")["Members"]
        assert mains["PowerWatts"]["DataSourceUri"] in [m["@odata.id"] for m in listed]


def test_a_feed_loss_shows_at_its_mains_and_moves_the_load_to_the_other_feed():
    site = quiet_site(servers=2)
    tree = pdu_tree(site)
    feed_a, feed_b = sorted(tree.pdu.feeds)
    before = reading(tree.get(tree.mains_path(feed_b))["PowerWatts"])
    fault = site.inject(EventKind.FEED_LOSS, tree.pdu.serial, feed=feed_a, duration_s=30)
    site.advance(1.0)
    lost = tree.get(tree.mains_path(feed_a))
    assert lost["PowerState"] == "Off" and lost["Status"]["Health"] == "Critical"
    assert reading(lost["PowerWatts"]) == 0
    assert all(reading(v) == 0 for v in lost["PolyPhaseVoltage"].values())
    assert tree.get(tree.unit_path(feed_a))["Status"]["Health"] == "Critical"
    assert reading(tree.get(tree.mains_path(feed_b))["PowerWatts"]) > 1.8 * before
    assert all(b.powered for b in site.bmcs.values())
    assert tree.origin_of(fault) == tree.mains_path(feed_a)
    assert tree.get(tree.origin_of(fault))["CircuitType"] == "Mains"
    site.advance(40.0)
    assert tree.get(tree.mains_path(feed_a))["PowerState"] == "On"


@contextmanager
def served(site: Site, tick_seconds: float = 3600.0) -> Iterator[SiteServer]:
    """A real SiteServer; a long tick keeps the clock still while a test reads (the site
    advances once at start, then when the test says)."""
    server = SiteServer(site, tick_seconds=tick_seconds).start()
    try:
        yield server
    finally:
        server.stop()


def url_of(server: SiteServer, kind: str) -> str:
    return next(d["url"] for d in server.devices if d["kind"] == kind)


def test_outlet_power_control_switches_the_load_for_real_over_http():
    site = quiet_site(servers=2)
    tree = pdu_tree(site)
    pdu = tree.pdu
    feed_a, feed_b = sorted(pdu.feeds)
    server = pdu.servers[0]
    with served(site) as sim:
        base = url_of(sim, DeviceKind.PDU)

        def outlet_of(feed: str) -> dict:
            for outlet in outlets(tree, feed):
                if outlet.get("ElectricalConsumerNames") == [server.serial]:
                    return outlet
            raise AssertionError("no outlet feeds the server")

        def control(feed: str, state: object) -> requests.Response:
            target = outlet_of(feed)["Actions"]["#Outlet.PowerControl"]["target"]
            return requests.post(f"{base}{target}", json={"PowerState": state}, auth=AUTH)

        draw = server.power_w
        assert control(feed_a, "Off").status_code == 204
        a, b = outlet_of(feed_a), outlet_of(feed_b)
        assert a["PowerState"] == "Off" and reading(a["PowerWatts"]) == 0
        assert reading(b["PowerWatts"]) == pytest.approx(draw, abs=1)  # B carries it alone
        assert server.powered
        assert control(feed_b, "Off").status_code == 204
        assert not server.powered and server.power_w == 0
        assert reading(outlet_of(feed_b)["PowerWatts"]) == 0
        assert pdu.servers[1].powered  # its neighbour is untouched
        assert control(feed_b, "On").status_code == 204
        assert server.powered
        assert control(feed_a, "PowerCycle").status_code == 204
        assert outlet_of(feed_a)["PowerState"] == "Off"
        with site.lock:
            site.advance(OUTLET_CYCLE_S)
        assert outlet_of(feed_a)["PowerState"] == "On"
        refused = control(feed_a, "Sideways")
        assert refused.status_code == 400
        assert refused.json()["error"]["code"].endswith("ActionParameterValueNotInList")
        assert control(feed_a, None).status_code == 400


# --- the CDU ---------------------------------------------------------------------------------


def secondary(tree: CduTree) -> dict:
    unit = tree.get(tree.unit)
    listing = tree.get(unit["SecondaryCoolantConnectors"]["@odata.id"])
    return tree.get(listing["Members"][0]["@odata.id"])


def expected_return(supply: float, heat_w: float, flow_lpm: float) -> float:
    kg_per_s = flow_lpm / 60 / 1000 * COOLANT_DENSITY_KG_M3
    return supply + heat_w / (kg_per_s * COOLANT_SPECIFIC_HEAT_KJ * 1000)


def test_cdu_reports_supply_return_flow_and_heat_in_standard_properties():
    site = quiet_site(servers=2)
    tree = cdu_tree(site)
    unit = tree.get(tree.unit)
    assert "Oem" not in unit  # the standard properties replace our extension
    assert unit["Coolant"]["SpecificHeatkJoulesPerKgK"] == COOLANT_SPECIFIC_HEAT_KJ
    loop = secondary(tree)
    supply, back = (
        reading(loop["SupplyTemperatureCelsius"]),
        reading(loop["ReturnTemperatureCelsius"]),
    )
    flow, heat_kw = reading(loop["FlowLitersPerMinute"]), reading(loop["HeatRemovedkW"])
    assert supply == 30.0 and flow > 0
    assert heat_kw * 1000 == pytest.approx(sum(b.power_w for b in site.bmcs.values()), abs=10)
    assert back == pytest.approx(expected_return(supply, heat_kw * 1000, flow), abs=0.02)
    assert back - supply == pytest.approx(reading(loop["DeltaTemperatureCelsius"]), abs=0.02)
    sensor = tree.get(loop["SupplyTemperatureCelsius"]["DataSourceUri"])
    assert sensor["ReadingType"] == "Temperature" and sensor["Reading"] == supply
    primary = tree.get(
        tree.get(unit["PrimaryCoolantConnectors"]["@odata.id"])["Members"][0]["@odata.id"]
    )
    assert reading(primary["SupplyTemperatureCelsius"]) < supply  # facility water is colder
    pumps = tree.get(unit["Pumps"]["@odata.id"])["Members"]
    assert len(pumps) == 2 and all(
        reading(tree.get(p["@odata.id"])["PumpSpeedPercent"]) for p in pumps
    )
    env = tree.get(unit["EnvironmentMetrics"]["@odata.id"])
    assert reading(env["TemperatureCelsius"]) > 0 and reading(env["HumidityPercent"]) > 0
    chassis = tree.get(unit["Links"]["Chassis"][0]["@odata.id"])
    assert len(tree.get(chassis["Sensors"]["@odata.id"])["Members"]) >= 10


def test_cdu_return_follows_the_load_and_supply_follows_an_excursion():
    site = quiet_site(servers=2)
    tree = cdu_tree(site)
    busy = secondary(tree)
    for bmc in site.bmcs.values():
        bmc.reset("ForceOff")
    site.advance(1.0)
    idle = secondary(tree)
    assert reading(idle["HeatRemovedkW"]) == 0
    assert reading(idle["ReturnTemperatureCelsius"]) == reading(idle["SupplyTemperatureCelsius"])
    assert reading(busy["ReturnTemperatureCelsius"]) > reading(idle["ReturnTemperatureCelsius"])
    for bmc in site.bmcs.values():
        bmc.reset("On")
    fault = site.inject(EventKind.COOLANT_EXCURSION, tree.cdu.serial, duration_s=60)
    site.advance(1.0)
    hot = secondary(tree)
    assert reading(hot["SupplyTemperatureCelsius"]) == 30.0 + EXCURSION_RISE_K
    assert hot["Status"]["Health"] == "Warning"
    assert tree.get(tree.unit)["Status"]["Health"] == "Warning"
    origin = tree.origin_of(fault)
    assert origin == hot["SupplyTemperatureCelsius"]["DataSourceUri"]
    sensor = tree.get(origin)
    assert sensor["Reading"] == 30.0 + EXCURSION_RISE_K and sensor["Status"]["Health"] == "Warning"
    assert all(b.coolant_c == 30.0 + EXCURSION_RISE_K for b in site.bmcs.values())
    site.advance(61.0)
    assert reading(secondary(tree)["SupplyTemperatureCelsius"]) == 30.0


def test_a_leak_at_the_cdu_makes_its_detector_critical():
    site = quiet_site(servers=1)
    tree = cdu_tree(site)
    detection = tree.get(tree.get(tree.unit)["LeakDetection"]["@odata.id"])
    detectors = tree.get(detection["LeakDetectors"]["@odata.id"])["Members"]
    assert len(detectors) == 3
    assert all(tree.get(d["@odata.id"])["DetectorState"] == "OK" for d in detectors)
    fault = site.inject(EventKind.LEAK, tree.cdu.serial, duration_s=120)
    origin = tree.origin_of(fault)
    assert origin in [d["@odata.id"] for d in detectors]
    wet = tree.get(origin)
    assert wet["DetectorState"] == "Critical" and wet["Status"]["Health"] == "Critical"
    assert wet["@odata.type"].startswith("#LeakDetector.")
    detection = tree.get(detection["@odata.id"])
    assert detection["Status"]["Health"] == "Critical"
    grouped = detection["LeakDetectorGroups"][0]["Detectors"]
    assert [d["DataSourceUri"] for d in grouped if d["DetectorState"] == "Critical"] == [origin]
    others = [d["@odata.id"] for d in detectors if d["@odata.id"] != origin]
    assert all(tree.get(d)["DetectorState"] == "OK" for d in others)
    assert tree.get(tree.unit)["Status"]["Health"] == "Critical"
    site.advance(121.0)
    assert tree.get(origin)["DetectorState"] == "OK"


def test_drawn_cdu_leaks_name_the_detector_they_wet_and_last_until_repaired():
    site = build_site(demo_layout(1, 1), seed=3, rates=FaultRates(leak=0.0, scale=0.0))
    cdu = next(iter(site.cdus.values()))
    site.cdus.clear()
    leaky = type(cdu)(cdu.serial, cdu.servers, seed=3, rates=FaultRates(leak=2000.0))
    site.cdus[leaky.serial] = leaky
    tree = CduTree(site, leaky)
    for _ in range(50):
        site.advance(60.0)
        if leaky.events:
            break
    leaks = [f for f in leaky.events if f.kind == EventKind.LEAK]
    assert leaks, "a leak rate this high draws one within the hour"
    origin = tree.origin_of(leaks[0])
    assert origin is not None and tree.get(origin)["DetectorState"] == "Critical"
    site.advance(86_400.0)
    assert tree.get(origin)["DetectorState"] == "Critical"  # drawn leaks wait for a person
    leaky.repair_leaks()
    assert tree.get(origin)["DetectorState"] == "OK"


# --- the agent's polls against a live SiteServer ---------------------------------------------


def agent_device(server: SiteServer, kind: str) -> Device:
    listed = next(d for d in server.devices if d["kind"] == kind)
    extra = {k: v for k, v in listed.items() if k not in ("kind", "serial", "url")}
    return Device(kind, listed["serial"], listed["url"], *AUTH, timeout=5, **extra)


@pytest.mark.parametrize("flavour", [DEFAULT, VENDOR_B], ids=lambda f: f.name)
def test_agent_polls_pdu_and_cdu_from_standard_properties(flavour: Flavour):
    site = build_site(demo_layout(1, 2), seed=1, rates=QUIET)
    for device in (*site.pdus.values(), *site.cdus.values()):
        device.flavour = flavour
    with served(site) as sim:
        pdu, cdu = agent_device(sim, DeviceKind.PDU), agent_device(sim, DeviceKind.CDU)
        try:
            rack_pdu = next(iter(site.pdus.values()))
            feeds = poll_pdu(pdu)["Oem"][wire.OEM][ReportKey.FEEDS]
            assert sorted(feeds) == sorted(rack_pdu.feeds)  # the rack's feed names, either way
            for feed, seen in feeds.items():
                assert seen[FeedReading.UP] is True
                assert seen[FeedReading.POWER_W] == pytest.approx(rack_pdu.load_w[feed], abs=0.5)
            feed_a = sorted(rack_pdu.feeds)[0]
            site.inject(EventKind.FEED_LOSS, rack_pdu.serial, feed=feed_a, duration_s=600)
            feeds = poll_pdu(pdu)["Oem"][wire.OEM][ReportKey.FEEDS]
            assert feeds[feed_a] == {FeedReading.POWER_W: 0.0, FeedReading.UP: False}

            site_cdu = next(iter(site.cdus.values()))
            report = poll_cdu(cdu)["Oem"][wire.OEM]
            assert report[ReportKey.SOURCE] == site_cdu.serial
            assert report[ReportKey.SUPPLY_TEMPERATURE] == 30.0
            assert report[ReportKey.HEAT_LOAD] == pytest.approx(site_cdu.heat_w, abs=10)
            site.inject(EventKind.COOLANT_EXCURSION, site_cdu.serial, duration_s=600)
            with site.lock:
                site.advance(1.0)
            report = poll_cdu(cdu)["Oem"][wire.OEM]
            assert report[ReportKey.SUPPLY_TEMPERATURE] == 30.0 + EXCURSION_RISE_K
            # Members were discovered from the collections, whatever this vendor calls them.
            found = {line.split("\t")[1] for line in pdu.discovered["pdu-mains"].split("\n")}
            assert found == mains_members(pdu)
            assert all(("/RackPDUs/1/" in p) == (flavour is VENDOR_B) for p in sorted(found)[:1])
        finally:
            pdu.close()
            cdu.close()


def mains_members(device: Device) -> set[str]:
    """Every Mains circuit the device's RackPDUs collection leads to."""
    units = device.get(wire.RACK_PDUS_PATH)["Members"]
    return {
        c["@odata.id"]
        for m in units
        for c in device.get(device.get(m["@odata.id"])["Mains"]["@odata.id"])["Members"]
    }
