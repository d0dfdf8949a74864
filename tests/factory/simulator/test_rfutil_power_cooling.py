"""DMTF's ``redfish_utilities`` scripts (session login, as they do by default) against a
simulated rack PDU and CDU, each its own process: ``rf_power_equipment.py`` lists the outlets
and shows per-line current, ``rf_thermal_equipment.py`` the coolant supply and return and the
leak detectors, including one an injected leak made Critical."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request

import pytest

from factory.wire import EventKind
from tests.support.processes import free_port
from tests.support.redfish import rf_script, simulated_device

pytestmark = pytest.mark.slow

# The single-device simulator's rack (``--device pdu``): one UltraServer on feeds A and B.
FEED_A, FEED_B = "DEMO-R01-A", "DEMO-R01-B"
CDU_SERIAL = "SIM-CDU-CDU1"


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def amps(text: str) -> list[float]:
    """The per-line currents a script printed (``L1   :   8.30 A``)."""
    return [float(a) for a in re.findall(r"^\s+(?:L[123]|N)\s*:\s*([\d.]+) A$", text, re.M)]


def test_rf_power_equipment_lists_outlets_and_shows_current():
    with simulated_device("pdu") as base:
        listing = ok(rf_script("rf_power_equipment.py", base, "list"))
        assert "RackPDUs" in listing and FEED_A in listing and FEED_B in listing

        table = ok(
            rf_script("rf_power_equipment.py", base, "outlets", "-t", "RackPDU", "-pe", FEED_A)
        )
        rows = re.findall(r"^\s+([A-Z]\d)\s+\|", table, re.M)
        assert rows == ["A1", "A2", "B1"]  # the server's tap, then the spares
        assert re.search(r"^\s+A1\s+\|\s+400 V AC\s+\|\s+3 Phase, 5 Wire", table, re.M)
        spare = re.search(
            r"^\s+B1\s+\|.*\|\s+([\d.]+)\s+\|\s+([\d.]+)\s+\|\s+([\d.]+)\s*$", table, re.M
        )
        assert spare and float(spare.group(1)) > 220  # a C19 spare's voltage and current
        assert float(spare.group(2)) == 0.0

        tap = ok(
            rf_script(
                "rf_power_equipment.py",
                base,
                "outletinfo",
                "-t",
                "RackPDU",
                "-pe",
                FEED_A,
                "-o",
                "A1",
            )
        )
        assert "Outlet A1 Info" in tap and "PowerState: On" in tap
        lines = amps(tap)
        assert len(lines) == 3 and all(a > 0 for a in lines)
        power = re.search(r"Power: ([\d.]+) W", tap)
        assert power
        watts = float(power.group(1))
        # 3 lines at ~240 V to neutral, power factor 0.99: P ≈ 3 × 240 × I.
        assert sum(lines) * 240 * 0.99 == pytest.approx(watts, rel=0.03)

        mains = ok(
            rf_script("rf_power_equipment.py", base, "mainsinfo", "-t", "RackPDU", "-pe", FEED_B)
        )
        assert "Mains AC1 Info" in mains and "PowerState: On" in mains
        assert "L1-N" in mains and "L1-L2" in mains and "Frequency: " in mains
        currents = amps(mains)
        assert len(currents) == 4 and all(a > 0 for a in currents[:3])  # L1, L2, L3, N
        assert currents[3] < min(currents[:3])  # balanced: a small neutral

        status = ok(
            rf_script("rf_power_equipment.py", base, "status", "-t", "RackPDU", "-pe", FEED_A)
        )
        assert "RackPDU DEMO-R01-A Info" in status and "Branch Id" in status


def test_rf_thermal_equipment_shows_coolant_and_a_leak():
    control_port = free_port()
    with simulated_device("cdu", "factory", "--control-port", str(control_port)) as base:
        status = ok(rf_script("rf_thermal_equipment.py", base, "status", "-t", "CDU"))
        assert "CDU 1 Info" in status and "Propylene glycol" in status
        row = re.search(
            r"^\s+1\s+\|\s+([\d.]+)\s+\|\s+([\d.]+)\s+\|\s+---\s+\|\s+([\d.]+)",
            status.split("Secondary Id")[1],
            re.M,
        )
        assert row, status
        flow, supply, back = (float(g) for g in row.groups())
        assert flow > 0 and supply == 30.0 and back > supply

        loop = ok(
            rf_script("rf_thermal_equipment.py", base, "secondaryinfo", "-t", "CDU", "-te", "1")
        )
        assert "SupplyTemperature: 30.0 C" in loop and "ReturnTemperature: " in loop
        assert re.search(r"HeatRemoved: [1-9][\d.]* kW", loop)

        detectors = ok(rf_script("rf_thermal_equipment.py", base, "leakdetectors", "-t", "CDU"))
        assert re.findall(r"^\s+(\w+)\s+\|.*\|\s+OK\s*$", detectors, re.M) == [
            "DripTray",
            "PumpTray",
            "Reservoir",
        ]

        inject = urllib.request.Request(
            f"http://127.0.0.1:{control_port}/sim/faults",
            data=json.dumps(
                {"kind": EventKind.LEAK, "target": CDU_SERIAL, "duration_s": 600}
            ).encode(),
            method="POST",
        )
        with urllib.request.urlopen(inject, timeout=5) as response:
            assert response.status == 201
        wet = ok(rf_script("rf_thermal_equipment.py", base, "leakdetectors", "-t", "CDU"))
        assert "Detectors in the CDU: Critical" in wet
        assert re.search(r"^\s+DripTray\s+\|.*\|\s+Critical\s*$", wet, re.M)
        assert re.search(r"^\s+PumpTray\s+\|.*\|\s+OK\s*$", wet, re.M)
