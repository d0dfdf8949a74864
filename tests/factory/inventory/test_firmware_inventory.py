"""Firmware inventory per component: stored from every command result that carries the BMC's
``firmware_inventory`` (posted by the agent through its real endpoints), shown in the
UltraServer API (each tenant its own), the admin and the console; a firmware release names its
bundle's component versions, and an unknown component is a 400 naming the field."""

from __future__ import annotations

import pytest
from django.urls import reverse

from factory import wire
from factory.agents import services as agents
from factory.inventory.models import ComponentFirmware
from tests.support.api import assert_error_body, gateway
from tests.support.telemetry import agent_client

pytestmark = pytest.mark.django_db

STATE = {
    wire.HardwareState.FIRMWARE_VERSION: "2.0",
    wire.HardwareState.INACTIVE_FIRMWARE_VERSION: "1.0",
    wire.HardwareState.DRAINED: False,
    wire.HardwareState.CABLED: True,
    wire.HardwareState.POWER_STATE: "On",
}
INVENTORY = {
    wire.FirmwareComponent.BMC: "2.0.1",
    wire.FirmwareComponent.BIOS: "U2.0",
    wire.FirmwareComponent.ACCELERATOR_TRAY: "neuron-2.0",
}


@pytest.fixture
def agent(fleet):
    """Alpha's site agent, speaking to the gateway over HTTP."""
    client, _ = agent_client(fleet.sites["alpha"])
    return client


def answer(client, fleet, kind=wire.CommandKind.QUERY_STATE, **result):
    """Queue ``kind`` for alpha's server and answer it as the agent does."""
    site, server = fleet.sites["alpha"], fleet.servers["alpha"]
    command = agents.submit(site_id=site.pk, kind=kind, ultraserver_id=server.pk)
    claimed = client.post(gateway(wire.CLAIM_PATH), {"limit": 10, "wait_seconds": 0}, "json")
    assert claimed.status_code == 200, claimed.content
    assert [c["id"] for c in claimed.json()["commands"]] == [str(command.pk)]
    posted = client.post(
        gateway(wire.RESULT_PATH, command_id=command.pk),
        {"ok": True, "result": {**STATE, **result}, "error": ""},
        "json",
    )
    assert posted.status_code == 200, posted.content
    return command


def inventory_of(server) -> dict[str, str]:
    return dict(
        ComponentFirmware.objects.filter(ultraserver=server).values_list("component", "version")
    )


def test_a_result_with_an_inventory_is_stored_per_component(fleet, agent):
    answer(agent, fleet, **{wire.HardwareState.FIRMWARE_INVENTORY: INVENTORY})
    assert inventory_of(fleet.servers["alpha"]) == INVENTORY


def test_every_later_result_updates_it_and_one_without_leaves_it(fleet, agent):
    answer(agent, fleet, **{wire.HardwareState.FIRMWARE_INVENTORY: INVENTORY})
    first = ComponentFirmware.objects.get(component="bmc").observed_at
    answer(
        agent,
        fleet,
        wire.CommandKind.INSTALL_CHECK,
        **{wire.HardwareState.FIRMWARE_INVENTORY: {"bmc": "2.0.2", "nic": "fw-7"}},
    )
    answer(agent, fleet, wire.CommandKind.QUERY_STATE)  # no inventory: what was read stays
    assert inventory_of(fleet.servers["alpha"]) == {**INVENTORY, "bmc": "2.0.2", "nic": "fw-7"}
    assert ComponentFirmware.objects.get(component="bmc").observed_at > first


def test_a_component_outside_the_contract_is_skipped_not_refused(fleet, agent):
    answer(agent, fleet, **{wire.HardwareState.FIRMWARE_INVENTORY: {"bmc": "2.0.1", "cpld": "3"}})
    assert inventory_of(fleet.servers["alpha"]) == {"bmc": "2.0.1"}


def test_the_api_shows_it_to_the_servers_tenant_only(fleet, agent):
    answer(agent, fleet, **{wire.HardwareState.FIRMWARE_INVENTORY: INVENTORY})
    server = fleet.servers["alpha"]
    url = f"/api/v1/ultraservers/{server.pk}/"
    shown = fleet.client("alpha_viewer").get(url)
    assert shown.status_code == 200
    rows = shown.json()["firmware_inventory"]
    assert [(r["component"], r["version"]) for r in rows] == sorted(INVENTORY.items())
    assert all(r["observed_at"] for r in rows)
    assert shown.json()["isolated_since"] is None
    assert fleet.client("beta_viewer").get(url).status_code == 404
    # Read-only: a write naming it changes nothing.
    admin = fleet.client("provider_admin")
    changed = admin.patch(url, {"firmware_inventory": [{"component": "bmc", "version": "x"}]})
    assert changed.status_code == 200
    assert inventory_of(server) == INVENTORY
    listed = fleet.client("alpha_viewer").get("/api/v1/ultraservers/").json()["results"]
    assert listed[0]["firmware_inventory"] == rows


def test_the_admin_and_the_console_show_it(fleet, agent, client, admin_client):
    answer(agent, fleet, **{wire.HardwareState.FIRMWARE_INVENTORY: INVENTORY})
    server = fleet.servers["alpha"]
    page = admin_client.get(reverse("admin:inventory_ultraserver_change", args=[server.pk]))
    assert page.status_code == 200
    assert b"neuron-2.0" in page.content and b"firmware inventory" in page.content.lower()
    client.force_login(fleet.people["provider_admin"])
    console = client.get(reverse("console:ultraserver", args=[server.pk]))
    assert console.status_code == 200
    text = console.content.decode()
    assert "Firmware inventory" in text
    assert "accelerator-tray" in text and "neuron-2.0" in text and "U2.0" in text


def test_a_release_names_its_bundles_component_versions(fleet):
    admin = fleet.client("provider_admin")
    body = {
        "model": fleet.servers["alpha"].model_id,
        "version": "3.0",
        "origin": "https://firmware.provider.example",
        "components": {"bmc": "3.0.1", "bios": "U3.0"},
    }
    created = admin.post("/api/v1/firmware-releases/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["components"] == {"bmc": "3.0.1", "bios": "U3.0"}


@pytest.mark.parametrize(
    ("components", "code"),
    [
        ({"bmc": "3.0.1", "cpld": "1"}, "unknown_component"),
        ({"bmc": ""}, "invalid_version"),
        (["bmc"], "invalid_components"),
    ],
)
def test_an_unknown_component_is_a_400_naming_the_field(fleet, components, code):
    admin = fleet.client("provider_admin")
    body = {
        "model": fleet.servers["alpha"].model_id,
        "version": "3.0",
        "origin": "https://firmware.provider.example",
        "components": components,
    }
    refused = assert_error_body(admin.post("/api/v1/firmware-releases/", body, format="json"), 400)
    assert [(e["field"], e["code"]) for e in refused["errors"]] == [("components", code)]
