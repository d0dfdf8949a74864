"""The wire contract (``factory.wire``): one spelling, which the control plane's choices, the
agent gateway, the site agent, the simulator and the test doubles all follow; and the site code
ships without the control plane."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from django.urls import reverse

from factory import wire
from factory.agents.api import serializers as agent_api
from factory.agents.choices import CommandKind
from factory.simulator.__main__ import demo_layout
from factory.simulator.devices import build_site
from factory.simulator.server import SiteServer
from factory.siteagent.commands import execute
from factory.siteagent.devices import Device
from factory.telemetry import codec
from factory.telemetry.api import serializers as telemetry_api
from factory.telemetry.choices import DeviceKind, FaultRule
from factory.telemetry.ingest import IngestResult
from tests.support.api import gateway
from tests.support.hardware import SimHardware
from tests.support.signing import any_image

ROOT = Path(__file__).resolve().parents[2]
SITE_PACKAGES = {"siteagent": {"requests", "urllib3"}, "simulator": {"cryptography"}}


def imports(path: Path) -> set[str]:
    """Every module a file imports, ``from a import b`` counted as ``a.b`` (b may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside its own package
                continue
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def foreign(name: str, package: str, third_party: set[str]) -> bool:
    top = name.split(".")[0]
    if top == "factory":
        return not name.startswith(("factory.wire", f"factory.{package}."))
    return top not in sys.stdlib_module_names and top not in third_party


@pytest.mark.parametrize("package", sorted(SITE_PACKAGES))
def test_site_code_imports_only_the_wire_contract_the_stdlib_and_its_own_deps(package):
    files = sorted((ROOT / "factory" / package).rglob("*.py"))
    assert files
    for path in files:
        bad = {n for n in imports(path) if foreign(n, package, SITE_PACKAGES[package])}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_site_image_installs_the_site_codes_deps_at_the_projects_ranges():
    """The Dockerfile's ``site`` stage pins the agent's and the simulator's dependencies as
    pyproject.toml does."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {re.split(r"[<>=!~\[ ]", d, maxsplit=1)[0].lower(): d for d in project}
    dockerfile = (ROOT / "Dockerfile").read_text()
    site_stage = dockerfile.split(" AS site", 1)[1].split("\nFROM ", 1)[0]
    installed = re.search(r"pip install ((?:\"[^\"]+\" ?)+)", site_stage)
    assert installed, "the site stage installs its dependencies with pip"
    pins = re.findall(r'"([^"]+)"', installed.group(1))
    assert pins == [wanted[name] for name in sorted(set().union(*SITE_PACKAGES.values()))]
    copied = re.findall(r"^COPY (.+)$", site_stage, flags=re.M)
    assert copied == [
        "factory/__init__.py factory/wire.py factory/",
        "factory/siteagent factory/siteagent",
        "factory/simulator factory/simulator",
    ]


def test_the_contract_and_the_package_root_need_only_the_stdlib():
    for path in (ROOT / "factory" / "wire.py", ROOT / "factory" / "__init__.py"):
        tree = ast.parse(path.read_text())
        top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        for node in top_level:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                assert name.split(".")[0] in sys.stdlib_module_names, f"{path.name}: {name}"


def test_at_run_time_the_site_code_loads_nothing_of_the_control_plane():
    code = (
        "import sys, factory.siteagent.__main__, factory.simulator.__main__\n"
        "ok = ('factory', 'factory.wire', 'factory.siteagent', 'factory.simulator')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework', "
        "'celery') or (m.startswith('factory') and m not in ok and not m.startswith(ok[2:]))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_django_choices_are_the_wire_contracts():
    assert [(c.name, c.value, c.label) for c in CommandKind] == [
        (k.name, k.value, wire.COMMANDS[k].label) for k in wire.CommandKind
    ]
    assert [(c.name, c.value, c.label) for c in FaultRule] == [
        (r.name, r.value, wire.FAULT_RULE_LABELS[r]) for r in wire.FaultRule
    ]
    assert {(c.name, c.value, c.label) for c in DeviceKind} <= {
        (d.name, d.value, wire.DEVICE_KIND_LABELS[d]) for d in wire.DeviceKind
    }
    assert set(wire.COMMANDS) == set(wire.CommandKind)


def test_storage_keeps_every_wire_metric_in_its_category():
    assert codec.METRICS == wire.METRIC_NAMES
    assert {m: codec.CATEGORY_OF[m] for m in codec.METRICS} == {
        m.name: m.category for m in wire.CHIP_METRICS
    }
    assert set(codec.CATEGORIES) == set(wire.Category)
    for spec in wire.CHIP_METRICS:
        assert spec.name == getattr(wire.Metric, spec.name.upper())


@pytest.mark.parametrize(
    ("serializer", "shape"),
    [
        (agent_api.ClaimRequestSerializer, wire.ClaimRequest),
        (agent_api.ClaimedCommandSerializer, wire.ClaimedCommand),
        (agent_api.ResultSerializer, wire.CommandOutcome),
        (agent_api.BatchResultItemSerializer, wire.BatchOutcome),
        (agent_api.BatchResultSerializer, wire.BatchOutcomes),
        (telemetry_api.AgentConfigSerializer, wire.AgentConfig),
        (telemetry_api.AgentEventSerializer, wire.Event),
        (telemetry_api.AgentEventsSerializer, wire.EventBatch),
        (telemetry_api.TelemetryBatchSerializer, wire.TelemetryBatch),
        (telemetry_api.IngestResultSerializer, wire.IngestAnswer),
    ],
)
def test_the_gateway_speaks_the_wire_shapes(serializer, shape):
    assert list(serializer().fields) == list(wire.fields(shape))


def test_the_gateway_answers_in_the_wire_shapes():
    assert list(IngestResult().as_dict()) == list(wire.fields(wire.IngestAnswer))
    for name, path in [
        ("agent-config", wire.CONFIG_PATH),
        ("agent-telemetry", wire.TELEMETRY_PATH),
        ("agent-events", wire.EVENTS_PATH),
        ("agent-claim", wire.CLAIM_PATH),
        ("agent-results", wire.RESULTS_PATH),
    ]:
        assert reverse(name) == gateway(path)
    command_id = "6f1c2d4e-0000-4000-8000-000000000001"
    assert reverse("agent-result", args=[command_id]) == gateway(
        wire.RESULT_PATH, command_id=command_id
    )


def run_every_command(carry_out, running: str) -> dict[wire.CommandKind, tuple[bool, dict, str]]:
    """Each command kind once, in an order that lets each succeed (``running`` is the firmware
    before the flash, which activate-bank then boots again)."""
    params = {
        wire.CommandKind.FLASH_FIRMWARE: {
            wire.CommandParam.VERSION: "2026.11.1",
            wire.CommandParam.ORIGIN: "aws-neuron",
        },
        wire.CommandKind.ACTIVATE_BANK: {wire.CommandParam.VERSION: running},
        wire.CommandKind.RESET: {wire.CommandParam.RESET_TYPE: "ForceRestart"},
        wire.CommandKind.INSTALL_CHECK: {
            wire.CommandParam.RACK: "R1",
            wire.CommandParam.POSITION: 1,
        },
    }
    return {kind: carry_out(kind, params.get(kind, {})) for kind in wire.CommandKind}


def assert_results_follow_the_contract(outcomes) -> None:
    for kind, (ok, result, error) in outcomes.items():
        assert ok, f"{kind}: {error}"
        spec = wire.COMMANDS[kind]
        assert set(spec.result) <= set(result) <= {*spec.result, *spec.optional}, kind
        assert set(wire.COMMANDS[kind].required) <= set(wire.COMMANDS[kind].params)


def test_the_agent_on_a_simulated_bmc_answers_every_command_as_the_contract_says():
    site = build_site(
        demo_layout(1, 1), seed=1, flash_seconds=0.2, flash_failure_rate=0, burn_in_seconds=0.2
    )
    for simulated in site.bmcs.values():
        del simulated.chips[4:]  # a small BMC: interconnect-check reads every chip's links
    server = SiteServer(site, tick_seconds=0.05).start()
    try:
        listed = next(d for d in server.devices if d["kind"] == wire.DeviceKind.BMC)
        bmc = Device(listed["kind"], listed["serial"], listed["url"], "admin", "factory-sim")
        outcomes = run_every_command(
            lambda kind, params: execute(bmc, kind, params, image_base=any_image(), poll_s=0.05),
            running=bmc.get(wire.SYSTEM_PATH)["BiosVersion"],
        )
    finally:
        server.stop()
    assert_results_follow_the_contract(outcomes)
    flashed = outcomes[wire.CommandKind.FLASH_FIRMWARE][1]
    assert flashed[wire.HardwareState.FIRMWARE_VERSION] == "2026.11.1"
    rolled_back = outcomes[wire.CommandKind.ACTIVATE_BANK][1]
    assert (
        rolled_back[wire.HardwareState.FIRMWARE_VERSION]
        == flashed[wire.HardwareState.INACTIVE_FIRMWARE_VERSION]
    )


def test_the_test_double_answers_as_the_contract_says():
    hw = SimHardware()
    outcomes = run_every_command(
        lambda kind, params: hw.execute(f"c-{kind}", kind, "SRV-1", params),
        running=hw.box("SRV-1").firmware,
    )
    del outcomes[wire.CommandKind.RESET]  # no workflow resets a server: the double cannot
    assert_results_follow_the_contract(outcomes)


def test_a_pdu_is_found_by_its_rack():
    assert wire.rack_of_pdu(wire.pdu_source("FRA1-R01")) == "FRA1-R01"
    uri = wire.firmware_image_uri("https://a.example/fw", "aws-neuron", "2026.11.1")
    assert wire.firmware_version_of(uri) == "2026.11.1"
    assert wire.chip_index(f"{wire.chip_path(17)}/EnvironmentMetrics#/PowerWatts/Reading") == 17


def test_the_contract_changes_only_on_purpose():
    """Agents in the field may run an older release than the control plane: a renamed value is
    a protocol change, not a refactoring. This is the one deliberate second spelling."""
    assert (wire.OEM, wire.AUTH_SCHEME, wire.API_ROOT) == ("AIFactory", "Agent", "/api/v1/")
    assert [k.value for k in wire.CommandKind] == [
        "install-check",
        "flash-firmware",
        "activate-bank",
        "reset",
        "burn-in",
        "interconnect-check",
        "drain",
        "undrain",
        "query-state",
    ]
    assert wire.METRIC_NAMES == (
        "power_w",
        "energy_j",
        "temp_c",
        "utilization",
        "hbm_used_gb",
        "ecc_corrected",
        "ecc_uncorrected",
        "link_errors",
        "link_down_s",
        "throttle_s",
        "health",
    )
    assert [m.type.value for m in wire.CHIP_METRICS] == list("fdfffqqqffb")
    assert [e.value for e in wire.EventKind] == [
        "chip-failure",
        "hbm-failure",
        "ecc-storm",
        "link-flap",
        "link-down",
        "feed-loss",
        "coolant-excursion",
        "leak",
    ]
    assert [r.value for r in wire.FaultRule] == [
        "ecc-uncorrectable",
        "chip-down",
        "link-down",
        "thermal-throttle",
        "feed-loss",
        "coolant-excursion",
        "agent-silent",
        "telemetry-stale",
        "reported",
        "leak",
    ]
    assert wire.HardwareState.KEYS == (
        "firmware_version",
        "inactive_firmware_version",
        "drained",
        "cabled",
        "power_state",
    )
