"""An upgrade's bundle names its component versions; when the agent reads the firmware
inventory back, verification checks each one and fails the server's flash naming the component
that kept its old firmware (then the usual rollback). Without an inventory a bundle with
components cannot be verified: the flash fails naming ``firmware_inventory``. Driven step by
step in-process against real PostgreSQL."""

from __future__ import annotations

import pytest
from django.utils import timezone

from factory.agents.models import AgentCommand
from factory.inventory.models import ComponentFirmware
from factory.wire import CommandKind, CommandParam, FirmwareComponent, HardwareState
from provisioning import services
from provisioning.models import Step
from tests.support.fleet import CTX
from tests.support.hardware import Box, SimHardware
from tests.support.harness import drive

pytestmark = pytest.mark.django_db

FAST = {"soak_seconds": 0, "poll_seconds": 1, "batch_size": 2, "max_failures": 1}
BUNDLE = {
    FirmwareComponent.BMC: "2.0.1",
    FirmwareComponent.BIOS: "U2.0",
    FirmwareComponent.ACCELERATOR_TRAY: "neuron-2.0",
}
OLD = {
    FirmwareComponent.BMC: "1.0.1",
    FirmwareComponent.BIOS: "U1.0",
    FirmwareComponent.ACCELERATOR_TRAY: "neuron-1.0",
}


class InventoryHardware(SimHardware):
    """The stand-in hardware, with a BMC that reports its FirmwareInventory: flashing a
    version installs that bundle's components, except those told to keep their old firmware
    (a tray whose update did not take)."""

    def __init__(self, bundles: dict[str, dict[str, str]], stuck: frozenset[str] = frozenset()):
        super().__init__()
        self.bundles, self.stuck = bundles, stuck
        self.components: dict[str, dict[str, str]] = {}

    def _state(self, box: Box) -> dict:
        inventory = self.components.setdefault(str(id(box)), dict(self.bundles[box.firmware]))
        return {**super()._state(box), HardwareState.FIRMWARE_INVENTORY: dict(inventory)}

    def _do(self, box: Box, serial, kind: str, params: dict):
        if kind == CommandKind.FLASH_FIRMWARE and not self.flash_failures[serial]:
            inventory = self.components.setdefault(str(id(box)), dict(self.bundles[box.firmware]))
            for component, version in self.bundles[params[CommandParam.VERSION]].items():
                if component not in self.stuck:
                    inventory[component] = version
        if kind == CommandKind.ACTIVATE_BANK:
            self.components[str(id(box))] = dict(self.bundles[params[CommandParam.VERSION]])
        return super()._do(box, serial, kind, params)


@pytest.fixture
def bundle(releases):
    releases["1.0"].components = dict(OLD)
    releases["1.0"].save()
    releases["2.0"].components = dict(BUNDLE)
    releases["2.0"].save()
    return releases["2.0"]


def upgrade(servers, **spec):
    workflow, created = services.create_workflow(
        "upgrade", servers, CTX, spec={"firmware_version": "2.0", **FAST, **spec}
    )
    assert created
    return workflow


def test_every_component_at_the_bundles_version_verifies(in_service, agent, bundle):
    hw = InventoryHardware({"1.0": OLD, "2.0": BUNDLE})
    workflow = drive(upgrade(in_service[:1]), agent, hw)
    assert workflow.state == "succeeded", workflow.state_reason
    stored = ComponentFirmware.objects.filter(ultraserver=in_service[0])
    assert dict(stored.values_list("component", "version")) == BUNDLE


def test_a_component_left_behind_fails_the_flash_naming_it(in_service, agent, bundle):
    hw = InventoryHardware({"1.0": OLD, "2.0": BUNDLE}, stuck=frozenset({"accelerator-tray"}))
    workflow = drive(upgrade(in_service[:1]), agent, hw)
    assert workflow.state == "failed"
    flash = Step.objects.get(workflow=workflow, name="flash")
    assert flash.state == "failed"
    assert "component accelerator-tray runs 'neuron-1.0', not 'neuron-2.0'" in flash.error
    target = workflow.targets.get()
    assert target.state == "rolled-back", target.error  # the other bank holds 1.0
    assert hw.box(in_service[0].serial).firmware == "1.0"


def test_without_an_inventory_a_bundle_with_components_fails_naming_it(
    in_service, agent, hw, bundle
):
    """A release that names components and a result that reads none back: not verified."""
    workflow = drive(upgrade(in_service[:1]), agent, hw)  # the plain stand-in reports none
    assert workflow.state == "failed"
    flash = Step.objects.get(workflow=workflow, name="flash")
    assert flash.state == "failed"
    assert "carries no firmware_inventory" in flash.error
    assert "accelerator-tray, bios, bmc" in flash.error
    assert not ComponentFirmware.objects.exists()


def test_a_release_without_components_verifies_without_an_inventory(
    in_service, agent, hw, releases
):
    workflow = drive(upgrade(in_service[:1]), agent, hw)
    assert workflow.state == "succeeded", workflow.state_reason


class MixedHardware(InventoryHardware):
    """A BMC whose accelerator trays disagree after the flash: the agent reports the
    component as ``mixed:`` and the versions it found."""

    def _state(self, box: Box) -> dict:
        state = super()._state(box)
        if box.firmware == "2.0":
            inventory = state[HardwareState.FIRMWARE_INVENTORY]
            inventory[FirmwareComponent.ACCELERATOR_TRAY] = "mixed:neuron-1.0,neuron-2.0"
        return state


def test_a_component_whose_entries_disagree_never_verifies(in_service, agent, bundle):
    hw = MixedHardware({"1.0": OLD, "2.0": BUNDLE})
    workflow = drive(upgrade(in_service[:1]), agent, hw)
    assert workflow.state == "failed"
    flash = Step.objects.get(workflow=workflow, name="flash")
    assert (
        "component accelerator-tray runs 'mixed:neuron-1.0,neuron-2.0', not 'neuron-2.0'"
        in flash.error
    )
    # Even a release that (wrongly) names "mixed:…" as its version is no match.
    bundle.components = {FirmwareComponent.ACCELERATOR_TRAY: "mixed:neuron-1.0,neuron-2.0"}
    bundle.save()
    workflow = drive(upgrade(in_service[1:2]), agent, hw)
    assert workflow.state == "failed"
    assert "mixed:" in Step.objects.get(workflow=workflow, name="flash").error


def test_an_isolated_server_is_failed_not_powered_on(in_service, agent, hw, releases):
    """A leak isolated the server while its upgrade runs: the queue refuses its next command
    (409 ``isolated``) and the step records that as the server's failure; nothing but the
    power-off reaches it."""
    server = in_service[0]
    type(server).objects.filter(pk=server.pk).update(
        isolated_since=timezone.now(), isolation_reason="power-off pending: Leak (fault #1)"
    )
    workflow = drive(upgrade(in_service[:1], rollback=False), agent, hw)
    assert workflow.state == "failed"
    drain = Step.objects.get(workflow=workflow, name="drain")
    assert drain.state == "failed"
    assert "is isolated since" in drain.error and "drain refused" in drain.error
    assert not AgentCommand.objects.filter(ultraserver=server).exclude(kind="query-state").exists()


def test_the_workflow_shows_the_bundles_component_versions(in_service, bundle, fleet):
    workflow = upgrade(in_service[:2])
    shown = fleet.client("alpha_viewer").get(f"/api/v1/workflows/{workflow.pk}/")
    assert shown.status_code == 200, shown.content
    assert shown.json()["firmware_bundle"] == [
        {"model": "trn3-ultraserver", "version": "2.0", "components": BUNDLE}
    ]
