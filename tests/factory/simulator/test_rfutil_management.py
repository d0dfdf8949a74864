"""DMTF's ``redfish_utilities`` scripts against a simulated BMC, logged in with a session as the
scripts do by default: accounts, the manager and its network protocol, the event log of an
injected fault, power reset. Each checks what the script printed and what the device then
holds (pure: no database)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
import requests

from factory.wire import EventKind
from tests.support.processes import free_port
from tests.support.redfish import BIN, PASSWORD, USERNAME, rf_script, simulated_device

ROOT = "/redfish/v1"
ADMIN = (USERNAME, PASSWORD)


@pytest.fixture(scope="module")
def device() -> Iterator[tuple[str, str]]:
    """A BMC (base URL) and its simulator's control service."""
    control = free_port()
    with simulated_device("bmc", "factory", "--control-port", str(control), family="trn2") as base:
        yield base, f"http://127.0.0.1:{control}"


def accounts(base: str) -> list[dict]:
    listing = requests.get(f"{base}{ROOT}/AccountService/Accounts", auth=ADMIN).json()
    return [requests.get(f"{base}{m['@odata.id']}", auth=ADMIN).json() for m in listing["Members"]]


def ok(run) -> str:  # type: ignore[no-untyped-def]
    assert run.returncode == 0, run.stdout + run.stderr
    return str(run.stdout)


def test_rf_accounts_lists_adds_logs_in_and_deletes(device):
    base, _ = device
    listing = ok(rf_script("rf_accounts.py", base))
    assert "admin" in listing and "Administrator" in listing
    ok(rf_script("rf_accounts.py", base, "--add", "auditor", "auditor-pass-1", "ReadOnly"))
    listing = ok(rf_script("rf_accounts.py", base))
    assert "auditor" in listing and "ReadOnly" in listing
    # The new account logs in (a session, as the scripts do) and reads, but may not write.
    login = requests.post(
        f"{base}{ROOT}/SessionService/Sessions",
        json={"UserName": "auditor", "Password": "auditor-pass-1"},
    )
    assert login.status_code == 201
    token = {"X-Auth-Token": login.headers["X-Auth-Token"]}
    assert requests.get(f"{base}{ROOT}/Systems", headers=token).status_code == 200
    as_auditor = subprocess.run(
        [
            sys.executable,
            str(BIN / "rf_accounts.py"),
            "--user",
            "auditor",
            "--password",
            "auditor-pass-1",
            "--rhost",
            base,
            "--add",
            "x",
            "x-pass-0001",
            "ReadOnly",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert as_auditor.returncode != 0  # ReadOnly: 403
    assert "x" not in [a["UserName"] for a in accounts(base)]
    ok(rf_script("rf_accounts.py", base, "--setrole", "auditor", "Operator"))
    assert "Operator" in ok(rf_script("rf_accounts.py", base))
    ok(rf_script("rf_accounts.py", base, "--delete", "auditor"))
    assert "auditor" not in ok(rf_script("rf_accounts.py", base))
    again = requests.post(
        f"{base}{ROOT}/SessionService/Sessions",
        json={"UserName": "auditor", "Password": "auditor-pass-1"},
    )
    assert again.status_code == 401


def test_rf_manager_config_shows_the_manager_and_changes_a_protocol(device):
    base, _ = device
    info = ok(rf_script("rf_manager_config.py", base, "info"))
    assert "BMC" in info and "Factory Simulated Systems" in info
    protocols = ok(rf_script("rf_manager_config.py", base, "getprotocol"))
    assert "HTTP" in protocols and "SSH" in protocols
    ok(
        rf_script(
            "rf_manager_config.py",
            base,
            "setprotocol",
            "--protocol",
            "SSH",
            "--enable",
            "--port",
            "2222",
        )
    )
    ssh = requests.get(f"{base}{ROOT}/Managers/BMC/NetworkProtocol", auth=ADMIN).json()["SSH"]
    assert ssh == {"ProtocolEnabled": True, "Port": 2222}
    assert "2222" in ok(rf_script("rf_manager_config.py", base, "getprotocol"))


def test_rf_logs_lists_an_injected_fault(device):
    base, control = device
    listing = json.load(urllib.request.urlopen(f"{control}/sim/devices"))
    serial = listing["devices"][0]["serial"]
    request = urllib.request.Request(
        f"{control}/sim/faults",
        data=json.dumps({"kind": EventKind.CHIP_FAILURE, "target": serial, "chip": 5}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert urllib.request.urlopen(request).status == 201
    logs = ok(rf_script("rf_logs.py", base, "--manager", "BMC", "--log", "EventLog"))
    # The registry's words about chip 5's Processor (the sixth member of the collection).
    system = requests.get(f"{base}{ROOT}/Systems/UltraServer", auth=ADMIN).json()
    chips = requests.get(f"{base}{system['Processors']['@odata.id']}", auth=ADMIN).json()
    chip = chips["Members"][5]["@odata.id"]
    assert f"The health of resource '{chip}' has changed to Critical." in logs
    ok(rf_script("rf_logs.py", base, "--manager", "BMC", "--log", "EventLog", "--clear"))
    entries = requests.get(
        f"{base}{ROOT}/Managers/BMC/LogServices/EventLog/Entries", auth=ADMIN
    ).json()
    assert entries["Members"] == []


def test_rf_power_reset_turns_the_system_off_and_on(device):
    base, _ = device
    system = f"{base}{ROOT}/Systems/UltraServer"
    ok(rf_script("rf_power_reset.py", base, "--type", "ForceOff"))
    assert requests.get(system, auth=ADMIN).json()["PowerState"] == "Off"
    ok(rf_script("rf_power_reset.py", base, "--type", "On"))
    assert requests.get(system, auth=ADMIN).json()["PowerState"] == "On"
