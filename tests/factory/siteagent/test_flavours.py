"""The agent's commands on both simulated vendors: OEM actions found by name under the
system's ``Actions.Oem`` (whatever the namespace and URI), the firmware inventory read per
component, the standby bank found in FirmwareInventory, a flash aimed at one component."""

from __future__ import annotations

import pytest

from factory import wire
from factory.siteagent import commands
from factory.wire import CommandKind, CommandParam, FirmwareComponent, HardwareState, OemAction
from tests.factory.siteagent.sites import FLAVOURS, device, site
from tests.support.signing import any_image


def run(bmc, kind, **params):
    return commands.execute(bmc, kind, params, image_base=any_image(), poll_s=0.1)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_oem_actions_are_found_by_name_whatever_the_vendor_calls_them(flavour):
    with site(flavour) as server:
        bmc = device(server)
        system = bmc.get(commands.system_uri(bmc))
        found = commands.oem_actions(system)
        assert set(OemAction) <= set(found)
        namespaces = {ns for ns, _ in found.values()}
        assert namespaces == ({wire.OEM} if flavour == "factory" else {"Contoso"})
        ok, state, error = run(bmc, CommandKind.DRAIN)
        assert (ok, error, state[HardwareState.DRAINED]) == (True, "", True)
        ok, state, error = run(bmc, CommandKind.UNDRAIN)
        assert (ok, error, state[HardwareState.DRAINED]) == (True, "", False)
        bmc.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_query_state_reads_every_components_firmware(flavour):
    with site(flavour) as server:
        bmc = device(server)
        state = run(bmc, CommandKind.QUERY_STATE)[1]
        inventory = state[HardwareState.FIRMWARE_INVENTORY]
        # trn2 has no switch trays; every other part lists its firmware.
        assert set(inventory) == {c.value for c in FirmwareComponent} - {"switch-tray"}
        assert inventory[FirmwareComponent.BIOS] == state[HardwareState.FIRMWARE_VERSION]
        assert state[HardwareState.INACTIVE_FIRMWARE_VERSION] == ""
        bmc.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_standby_bank_is_read_from_firmware_inventory_and_can_be_booted(flavour):
    with site(flavour, flash_seconds=0.5) as server:
        bmc = device(server)
        before = run(bmc, CommandKind.QUERY_STATE)[1][HardwareState.FIRMWARE_VERSION]
        ok, state, error = run(bmc, CommandKind.FLASH_FIRMWARE, version="2027.02.1")
        assert (ok, error) == (True, "")
        assert state[HardwareState.INACTIVE_FIRMWARE_VERSION] == before
        assert state[HardwareState.FIRMWARE_INVENTORY][FirmwareComponent.BIOS] == "2027.02.1"
        ok, state, error = run(bmc, CommandKind.ACTIVATE_BANK, version=before)
        assert (ok, error) == (True, "")
        assert state[HardwareState.FIRMWARE_VERSION] == before
        assert state[HardwareState.INACTIVE_FIRMWARE_VERSION] == "2027.02.1"
        bmc.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_flash_may_name_one_component(flavour):
    with site(flavour, flash_seconds=0.5) as server:
        bmc = device(server)
        before = run(bmc, CommandKind.QUERY_STATE)[1][HardwareState.FIRMWARE_INVENTORY]
        ok, state, error = run(
            bmc,
            CommandKind.FLASH_FIRMWARE,
            version="9.9.9",
            **{CommandParam.COMPONENT: FirmwareComponent.NIC.value},
        )
        assert (ok, error) == (True, "")
        after = state[HardwareState.FIRMWARE_INVENTORY]
        assert after[FirmwareComponent.NIC] == "9.9.9"
        assert {k: v for k, v in after.items() if k != FirmwareComponent.NIC} == {
            k: v for k, v in before.items() if k != FirmwareComponent.NIC
        }
        ok, _, error = run(
            bmc, CommandKind.FLASH_FIRMWARE, version="1", **{CommandParam.COMPONENT: "toaster"}
        )
        assert ok is False
        assert "toaster" in error
        bmc.close()


def test_inventory_entries_map_to_components_by_vendor_ids_and_names():
    def component(**entry):
        return commands.firmware_component(entry)

    assert component(SoftwareId="contoso-power-shelf", Name="PSU firmware") == "power-shelf"
    assert component(SoftwareId="factory-switch-tray") == "switch-tray"
    assert component(Id="BMC", Name="Baseboard management controller") == "bmc"
    assert component(Id="UEFI") == "bios"
    assert component(Id="Active", Name="Active firmware bank") is None
    assert commands.is_standby({"Id": "x", "Status": {"State": "StandbySpare"}})
    assert commands.is_standby({"Id": "BIOS_Backup"})
