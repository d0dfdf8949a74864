"""The simulator's physics, fault injection and Redfish actions (pure: no Django, no database)."""

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import requests

from factory import wire
from factory.simulator.__main__ import demo_layout
from factory.simulator.devices import build_site
from factory.simulator.faults import CHIP_FAILURE, FaultInjector, FaultRates
from factory.simulator.hardware import SPECS, THROTTLE_AT_C, Chip, step_chip
from factory.simulator.redfish import BmcTree, HttpError
from factory.simulator.server import SiteServer
from factory.wire import OEM, BurnInResult, DeviceKind, EventKind, HardwareState, OemAction
from tests.support.purity import imported_modules

TRN3 = SPECS["trn3"]


def test_simulator_and_agent_import_no_django():
    for folder in ("factory/simulator", "factory/siteagent"):
        for path in Path(folder).glob("*.py"):
            assert not any(m.startswith("django") for m in imported_modules(str(path))), path
    # And at run time, nothing pulls it in indirectly.
    code = (
        "import sys, factory.simulator.__main__, factory.siteagent.__main__;"
        "assert not [m for m in sys.modules if m.startswith('django')], 'django imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_power_follows_utilization_and_heat_follows_power():
    idle, busy = Chip(0), Chip(1)
    step_chip(idle, TRN3, target_util=0.0, coolant_c=30, now=1, dt=10)
    step_chip(busy, TRN3, target_util=1.0, coolant_c=30, now=1, dt=10)
    assert idle.power_w == pytest.approx(250)  # 25 % of nominal at idle
    assert busy.power_w == pytest.approx(1000)
    assert busy.temp_c == pytest.approx(70)  # 30 °C coolant + 40 K at nominal power
    assert busy.energy_j == pytest.approx(10_000)  # 1 kW for 10 s
    assert idle.temp_c < busy.temp_c


def test_warm_coolant_makes_a_chip_throttle_and_count_it():
    chip = Chip(0)
    step_chip(chip, TRN3, target_util=1.0, coolant_c=60, now=1, dt=5)
    assert chip.temp_c == THROTTLE_AT_C
    assert chip.power_w < 1000
    assert chip.throttle_s == 5


def test_faults_are_deterministic_under_a_seed_and_differ_across_seeds():
    def events(seed):
        site = build_site(demo_layout(), seed=seed, rates=FaultRates(scale=5e4))
        for _ in range(300):
            site.advance(1.0)
        return [
            (f.kind, f.target, f.chip, f.link, f.duration_s)
            for device in (*site.bmcs.values(), *site.pdus.values(), *site.cdus.values())
            for f in device.events
        ]

    first = events(7)
    assert first, "a large scale must produce faults in 300 s"
    assert events(7) == first
    assert events(8) != first


def test_chip_failure_rate_matches_hardware_md():
    """Llama 3's 196 chip failures over 16,384 GPUs × 54 days, drawn per tick."""
    injector = FaultInjector(3, "x", FaultRates(scale=1000))
    chips, days = 1000, 10
    drawn = sum(
        1
        for _ in range(days * 24)
        for f in injector.server_faults(chips, 4, 3600.0)
        if f.kind == EventKind.CHIP_FAILURE
    )
    expected = CHIP_FAILURE * 1000 * chips * days  # ≈ 2,215
    assert expected * 0.9 < drawn < expected * 1.1


def test_firmware_update_takes_time_and_keeps_the_old_bank():
    site = build_site(demo_layout(1, 1), seed=1, flash_seconds=20, flash_failure_rate=0)
    bmc = next(iter(site.bmcs.values()))
    tree = BmcTree(site, bmc)
    status, task, headers = tree.post(
        wire.SIMPLE_UPDATE_PATH,
        {"ImageURI": wire.firmware_image_uri("https://artifacts", "aws-neuron", "2026.11.1")},
    )
    assert status == 202 and task["TaskState"] == "Running"
    # Location is the task monitor (DSP0266); the Task itself is the body's @odata.id.
    assert headers["Location"] == task["TaskMonitor"] != task["@odata.id"]
    site.advance(10)
    assert tree.get(task["@odata.id"])["TaskState"] == "Running"
    assert bmc.firmware_active == "2026.09.1"
    site.advance(10)
    assert tree.get(task["@odata.id"])["TaskState"] == "Completed"
    assert (bmc.firmware_active, bmc.firmware_inactive) == ("2026.11.1", "2026.09.1")
    # A/B: the previous version is one action away.
    activate = wire.oem_action_path(OemAction.ACTIVATE_BANK)
    status, state, _ = tree.post(activate, {wire.ACTIVATE_BANK_VERSION: "2026.09.1"})
    assert status == 200 and state[HardwareState.FIRMWARE_VERSION] == "2026.09.1"
    with pytest.raises(HttpError) as refused:
        tree.post(activate, {wire.ACTIVATE_BANK_VERSION: "9.9"})
    assert refused.value.status == 409


def test_a_failing_flash_leaves_the_banks_alone():
    site = build_site(demo_layout(1, 1), seed=1, flash_seconds=1, flash_failure_rate=1.0)
    bmc = next(iter(site.bmcs.values()))
    tree = BmcTree(site, bmc)
    _, accepted, _ = tree.post(
        wire.SIMPLE_UPDATE_PATH, {"ImageURI": wire.firmware_image_uri("x", "y", "2.0")}
    )
    site.advance(1)
    task = tree.get(accepted["@odata.id"])
    assert task["TaskState"] == "Exception"
    assert (bmc.firmware_active, bmc.firmware_inactive) == ("2026.09.1", "")


def test_burn_in_reports_failed_chips_and_a_swap_clears_them():
    site = build_site(demo_layout(1, 1), seed=1, burn_in_seconds=2)
    serial, bmc = next(iter(site.bmcs.items()))
    site.inject(EventKind.HBM_FAILURE, serial, chip=17)
    tree = BmcTree(site, bmc)
    _, _, headers = tree.post(wire.oem_action_path(OemAction.BURN_IN), {})
    site.advance(2)
    result = tree.get(headers["Location"])["Oem"][OEM]
    assert result[BurnInResult.FAILED_CHIPS] == [
        {BurnInResult.INDEX: 17, BurnInResult.DETAIL: "uncorrectable HBM ECC"}
    ]
    bmc.replace_chip(17)
    assert bmc.burn_in(site.now).result[BurnInResult.FAILED_CHIPS] == []


def test_feed_loss_on_one_path_keeps_the_rack_up_and_both_take_it_down():
    site = build_site(demo_layout(1, 2), seed=1)
    pdu = next(iter(site.pdus.values()))
    site.advance(1)
    feed_a, feed_b = sorted(pdu.feeds)
    site.inject(EventKind.FEED_LOSS, pdu.serial, feed=feed_a, duration_s=30)
    site.advance(1)
    assert pdu.load_w[feed_a] == 0 and pdu.load_w[feed_b] > 0
    assert all(b.powered for b in site.bmcs.values())
    site.inject(EventKind.FEED_LOSS, pdu.serial, feed=feed_b, duration_s=30)
    site.advance(1)
    assert not any(b.powered for b in site.bmcs.values())
    site.advance(40)
    assert all(b.powered for b in site.bmcs.values())


def test_served_over_http_with_auth_and_a_fault_endpoint():
    site = build_site(demo_layout(1, 1), seed=1)
    server = SiteServer(site, tick_seconds=0.05).start()
    try:
        bmc_url = next(d["url"] for d in server.devices if d["kind"] == DeviceKind.BMC)
        with urllib.request.urlopen(f"{bmc_url}{wire.REDFISH_ROOT}/") as response:
            assert json.load(response)["@odata.type"].startswith("#ServiceRoot.")
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"{bmc_url}{wire.SYSTEM_PATH}")
        assert denied.value.code == 401
        serial = next(iter(site.bmcs))
        request = urllib.request.Request(
            f"{server.control_url}/sim/faults",
            data=json.dumps({"kind": EventKind.CHIP_FAILURE, "target": serial, "chip": 5}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request) as response:
            assert response.status == 201
        assert site.bmcs[serial].chips[5].health == 2
        bad = urllib.request.Request(
            f"{server.control_url}/sim/faults",
            data=json.dumps({"kind": "meteor", "target": serial}).encode(),
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad)
        assert refused.value.code == 400
        for body in ({"target": serial, "chip": 999}, {"target": serial, "chip": "x"}):
            repair = urllib.request.Request(
                f"{server.control_url}/sim/repair", data=json.dumps(body).encode(), method="POST"
            )
            with pytest.raises(urllib.error.HTTPError) as bad:
                urllib.request.urlopen(repair)
            assert bad.value.code == 400
    finally:
        server.stop()


def test_the_control_service_places_a_leak_on_a_tray_lists_it_and_repairs_it():
    """``/sim/faults`` takes a leak's ``tray``, ``/sim/events`` shows it, ``/sim/repair`` with
    ``kind: leak`` dries a BMC's tray (or a CDU's detectors); what the BMC serves follows."""
    site = build_site(demo_layout(1, 1), seed=1, rates=FaultRates(scale=0.0))
    server = SiteServer(site, tick_seconds=0.05).start()
    auth = ("admin", "factory-sim")
    control = server.control_url

    def wet_detectors(url: str) -> list[str]:
        chassis = requests.get(f"{url}{wire.REDFISH_ROOT}/Chassis", auth=auth, timeout=5).json()
        path = chassis["Members"][0]["@odata.id"]
        thermal = requests.get(f"{url}{path}", auth=auth, timeout=5).json()["ThermalSubsystem"]
        subsystem = requests.get(f"{url}{thermal['@odata.id']}", auth=auth, timeout=5).json()
        detection = requests.get(
            f"{url}{subsystem['LeakDetection']['@odata.id']}", auth=auth, timeout=5
        ).json()
        return [
            d["DataSourceUri"]
            for g in detection["LeakDetectorGroups"]
            for d in g["Detectors"]
            if d["DetectorState"] != "OK"
        ]

    try:
        serial = next(iter(site.bmcs))
        url = next(d["url"] for d in server.devices if d["serial"] == serial)
        cdu = next(iter(site.cdus))
        for tray in (2, 5):
            placed = requests.post(
                f"{control}/sim/faults",
                json={"kind": EventKind.LEAK, "target": serial, "tray": tray, "duration_s": 0},
                timeout=5,
            )
            assert placed.status_code == 201
            assert placed.json()["injected"]["tray"] == tray
        # A leak placed by chip is listed at that chip's tray.
        chip = TRN3.chips_per_tray * 7
        requests.post(
            f"{control}/sim/faults",
            json={"kind": EventKind.LEAK, "target": serial, "chip": chip, "duration_s": 0},
            timeout=5,
        ).raise_for_status()
        listed = requests.get(f"{control}/sim/events", timeout=5).json()["events"]
        assert [e["tray"] for e in listed if e["kind"] == EventKind.LEAK] == [2, 5, 7]
        assert all("tray" in e for e in listed)
        assert len(wet_detectors(url)) == 3

        dried = requests.post(
            f"{control}/sim/repair",
            json={"target": serial, "kind": "leak", "tray": 5},
            timeout=5,
        )
        assert dried.status_code == 200
        assert site.bmcs[serial].leaks == {2, 7}
        assert len(wet_detectors(url)) == 2
        every = {"target": serial, "kind": "leak"}
        assert requests.post(f"{control}/sim/repair", json=every, timeout=5).status_code == 200
        assert wet_detectors(url) == []

        requests.post(
            f"{control}/sim/faults",
            json={"kind": EventKind.LEAK, "target": cdu, "duration_s": 0},
            timeout=5,
        ).raise_for_status()
        assert site.cdus[cdu].leaks(site.now)
        fixed = requests.post(
            f"{control}/sim/repair", json={"target": cdu, "kind": "leak"}, timeout=5
        )
        assert fixed.status_code == 200
        assert site.cdus[cdu].leaks(site.now) == []

        refusals = [
            ("/sim/faults", {"kind": EventKind.LEAK, "target": serial, "tray": 99}, 400),
            ("/sim/faults", {"kind": EventKind.LEAK, "target": serial, "tray": "x"}, 400),
            ("/sim/repair", {"target": serial, "kind": "leak", "tray": 99}, 400),
            ("/sim/repair", {"target": serial, "kind": "leak", "tray": True}, 400),
            ("/sim/repair", {"target": cdu, "kind": "leak", "tray": 1}, 400),
            ("/sim/repair", {"target": serial, "kind": "fan"}, 400),
            ("/sim/repair", {"target": "nobody", "kind": "leak"}, 404),
            ("/sim/repair", {"target": next(iter(site.pdus)), "kind": "leak"}, 404),
        ]
        for path, body, status in refusals:
            refused = requests.post(f"{control}{path}", json=body, timeout=5)
            assert refused.status_code == status, (path, body, refused.text)
            assert refused.json()["error"]["message"]
        # The chip swap is as it was: no kind means a chip.
        site.inject(EventKind.CHIP_FAILURE, serial, chip=4)
        swapped = requests.post(
            f"{control}/sim/repair", json={"target": serial, "chip": 4}, timeout=5
        )
        assert swapped.status_code == 200
        assert site.bmcs[serial].chips[4].health == 0
    finally:
        server.stop()


@pytest.mark.parametrize("kind", [DeviceKind.PDU, DeviceKind.CDU])
def test_the_flavour_option_flavours_the_pdus_and_the_cdu_too(kind: str) -> None:
    """``--device pdu --flavour contoso`` serves a Contoso PDU: its vendor's Manager and
    no SSE, as ``--flavour`` does for a BMC."""
    process = subprocess.Popen(
        [sys.executable, "-m", "factory.simulator", "--device", kind, "--flavour", "contoso"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        listing = json.loads(process.stdout.readline())
        (device,) = listing["devices"]
        auth = ("admin", "factory-sim")
        events = requests.get(f"{device['url']}{wire.REDFISH_ROOT}/EventService", auth=auth)
        assert events.status_code == 200
        assert "ServerSentEventUri" not in events.json()
        manager = requests.get(f"{device['url']}{wire.REDFISH_ROOT}/Managers/BMC", auth=auth)
        assert manager.json()["Manufacturer"] == "Contoso Hardware"
    finally:
        process.terminate()
        process.wait(timeout=10)
