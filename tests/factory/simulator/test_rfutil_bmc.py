"""DMTF's ``redfish_utilities`` scripts against the simulated BMC, in both vendor flavours: the
sensors they list carry readings, the firmware inventory lists every component with its
version, and a targeted ``rf_update.py`` flashes that component only.

Each test starts its own simulator process on a free port (``tests.support.redfish``); the
scripts log in with a session, as they do against a real BMC. A Trn2 UltraServer (16 trays)
keeps the walks short.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request

import pytest

from factory import wire
from factory.simulator.hardware import COMPONENT_FIRMWARE, SPECS
from factory.wire import FirmwareComponent
from tests.support.redfish import PASSWORD, USERNAME, rf_script, simulated_device

pytestmark = pytest.mark.slow

FAMILY = "trn2"
INVENTORY = f"{wire.REDFISH_ROOT}/UpdateService/FirmwareInventory"
#: ``  Sensor <Id> | <reading> <units> | <health> | ...`` as ``rf_sensor_list.py --id`` prints.
SENSOR_ROW = re.compile(r"^\s+Sensor (\S+)\s+\|\s+(-?[\d.]+) (\S+)\s+\|\s+(\w+)")
#: ``  <Id> | <version>`` as ``rf_firmware_inventory.py --id`` prints.
INVENTORY_ROW = re.compile(r"^\s+(\S+)\s+\|\s+(\S+)\s*$")


def get(base: str, path: str) -> dict:
    auth = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def sensor_rows(stdout: str) -> dict[str, tuple[float, str, str]]:
    rows = {}
    for line in stdout.splitlines():
        found = SENSOR_ROW.match(line)
        if found:
            rows[found[1]] = (float(found[2]), found[3], found[4])
    return rows


def inventory_rows(stdout: str) -> dict[str, str]:
    return {m[1]: m[2] for m in map(INVENTORY_ROW.match, stdout.splitlines()) if m}


@pytest.mark.parametrize(
    ("flavour", "tray", "inlet", "outlet", "power"),
    [
        ("factory", "Tray{n}Temp", "CoolantInletTemp", "CoolantOutletTemp", "ChassisPower"),
        ("contoso", "TEMP_SLED{n}", "TEMP_COOLANTINLET", "TEMP_COOLANTOUTLET", "POWER_CHASSIS"),
    ],
)
def test_rf_sensor_list_lists_every_sensor_with_its_reading(flavour, tray, inlet, outlet, power):
    with simulated_device("bmc", flavour, family=FAMILY) as base:
        run = rf_script("rf_sensor_list.py", base, "--id")
    assert run.returncode == 0, run.stdout + run.stderr
    rows = sensor_rows(run.stdout)
    trays = [tray.format(n=n) for n in range(SPECS[FAMILY].trays)]
    assert set(trays) | {inlet, outlet, power} <= set(rows), run.stdout
    for name in trays:
        reading, units, health = rows[name]
        assert units == "Cel" and 25 < reading < 90 and health == "OK"
    assert rows[inlet][:2] == (30.0, "Cel")
    assert rows[outlet][0] > rows[inlet][0]  # the loop takes the heat away
    assert rows[power][1] == "W" and rows[power][0] > 1000


@pytest.mark.parametrize("flavour", ["factory", "contoso"])
def test_rf_firmware_inventory_lists_every_component_with_its_version(flavour):
    with simulated_device("bmc", flavour, family="trn3") as base:
        run = rf_script("rf_firmware_inventory.py", base, "--id")
        entries = [get(base, m["@odata.id"]) for m in get(base, INVENTORY)["Members"]]
        system = get(base, get(base, f"{wire.REDFISH_ROOT}/Systems")["Members"][0]["@odata.id"])
    assert run.returncode == 0, run.stdout + run.stderr
    listed = inventory_rows(run.stdout)
    # What the script lists is what the service holds: one entry per component (no standby
    # bank before a flash), each with its own version.
    assert listed == {e["Id"]: e["Version"] for e in entries}
    assert len(listed) == len(FirmwareComponent)
    expected = {**COMPONENT_FIRMWARE, FirmwareComponent.BIOS: system["BiosVersion"]}
    assert sorted(listed.values()) == sorted(expected.values())


@pytest.mark.parametrize("flavour", ["factory", "contoso"])
def test_rf_update_with_a_target_flashes_that_component_only(flavour):
    fast = ("--flash-seconds", "2", "--flash-failure-rate", "0", "--tick", "0.5")
    with simulated_device("bmc", flavour, *fast, family=FAMILY) as base:
        entries = {
            e["Id"]: e for e in (get(base, m["@odata.id"]) for m in get(base, INVENTORY)["Members"])
        }
        nic = next(e for e in entries.values() if e["Version"] == COMPONENT_FIRMWARE["nic"])
        image = wire.firmware_image_uri("https://artifacts.example", "vendor", "28.43.2000")
        run = rf_script("rf_update.py", base, "--image", image, "--target", nic["@odata.id"])
        after = {
            e["Id"]: e["Version"]
            for e in (get(base, m["@odata.id"]) for m in get(base, INVENTORY)["Members"])
        }
    assert run.returncode == 0, run.stdout + run.stderr
    assert after[nic["Id"]] == "28.43.2000"
    assert {k: v for k, v in after.items() if k != nic["Id"]} == {
        k: e["Version"] for k, e in entries.items() if k != nic["Id"]
    }


def test_rf_update_of_a_local_image_pushes_it_to_the_multipart_push_uri(tmp_path):
    """A local file: ``rf_update.py`` takes ``MultipartHttpPushUri`` (redfish_utilities'
    ``multipart_push_update``), and the BMC flashes the bytes pushed to the one target named.
    (The contoso flavour offers only SimpleUpdate; the script would host the file itself.)"""
    fast = ("--flash-seconds", "2", "--flash-failure-rate", "0", "--tick", "0.5")
    image = tmp_path / "28.43.2000.bin"
    image.write_bytes(b"pushed firmware\n" * 4096)
    with simulated_device("bmc", "factory", *fast, family=FAMILY) as base:
        service = get(base, f"{wire.REDFISH_ROOT}/UpdateService")
        assert service["MultipartHttpPushUri"] == wire.MULTIPART_PUSH_PATH
        entries = {
            e["Id"]: e for e in (get(base, m["@odata.id"]) for m in get(base, INVENTORY)["Members"])
        }
        nic = next(e for e in entries.values() if e["Version"] == COMPONENT_FIRMWARE["nic"])
        run = rf_script("rf_update.py", base, "--image", str(image), "--target", nic["@odata.id"])
        after = {
            e["Id"]: e["Version"]
            for e in (get(base, m["@odata.id"]) for m in get(base, INVENTORY)["Members"])
        }
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Pushing the image" in run.stdout
    assert after[nic["Id"]] == "28.43.2000"
    assert {k: v for k, v in after.items() if k != nic["Id"]} == {
        k: e["Version"] for k, e in entries.items() if k != nic["Id"]
    }
