"""Rolling upgrades, driven step by step in-process against real PostgreSQL."""

import pytest

from factory.agents.models import AgentCommand
from factory.inventory.models import UltraServer
from factory.wire import CommandKind
from provisioning import services
from provisioning.models import Step, WorkflowEvent
from tests.support.fleet import CTX
from tests.support.harness import drive

pytestmark = pytest.mark.django_db

FAST = {"soak_seconds": 0, "poll_seconds": 1, "batch_size": 2, "max_failures": 1}


def upgrade(servers, **spec):
    workflow, created = services.create_workflow(
        "upgrade", servers, CTX, spec={"firmware_version": "2.0", **FAST, **spec}
    )
    assert created
    return workflow


def test_rolling_upgrade_canary_then_batches(in_service, agent, hw):
    workflow = drive(upgrade(in_service), agent, hw)
    assert workflow.state == "succeeded", workflow.state_reason
    batches = sorted(workflow.targets.values_list("batch", flat=True))
    assert batches == [0, 1, 1, 2, 2, 3]  # canary of 1, then batches of 2
    for server in UltraServer.objects.filter(pk__in=[s.pk for s in in_service]):
        assert (server.firmware_version, server.lifecycle_state) == ("2.0", "in-service")
        assert hw.box(server.serial).firmware == "2.0"
        assert not hw.box(server.serial).drained
    assert max(hw.executed.values()) == 1  # no command carried out twice
    assert not workflow.targets.filter(active=True).exists()


def test_failed_flash_is_verified_then_retried(in_service, agent, hw):
    hw.flash_failures[in_service[0].serial] = 1
    workflow = drive(upgrade(in_service[:1]), agent, hw)
    assert workflow.state == "succeeded"
    flash = Step.objects.get(workflow=workflow, name="flash")
    assert flash.attempt == 2
    kinds = list(
        AgentCommand.objects.filter(ultraserver=in_service[0])
        .order_by("created_at")
        .values_list("kind", "state")
    )
    # the failed flash is followed by a read of the real state before the second flash
    i = kinds.index((CommandKind.FLASH_FIRMWARE, "failed"))
    assert kinds[i + 1] == (CommandKind.QUERY_STATE, "succeeded")
    assert kinds[i + 2] == (CommandKind.FLASH_FIRMWARE, "succeeded")


def test_lost_result_is_not_repeated_when_the_flash_took(in_service, agent, hw):
    """The agent flashed, then died before reporting: the engine reads the state, sees the new
    version running, and does not flash again."""
    hw.lose_results[in_service[0].serial] = 2  # drain's and flash's results are lost
    workflow = drive(upgrade(in_service[:1]), agent, hw)
    assert workflow.state == "succeeded"
    flashes = AgentCommand.objects.filter(
        ultraserver=in_service[0], kind=CommandKind.FLASH_FIRMWARE
    )
    assert flashes.count() == 1 and flashes.get().state == "expired"
    assert WorkflowEvent.objects.filter(workflow=workflow, kind="verified").count() == 2


def test_flash_that_keeps_failing_rolls_back_to_the_other_bank(in_service, agent, hw):
    serial = in_service[0].serial
    hw.flash_failures[serial] = 99
    hw.box(serial).inactive = "0.9"
    # Flash "succeeds" once to put 1.0 in the inactive bank? No: the old version is still
    # active, so the server is put back as it was.
    workflow = drive(upgrade(in_service[:1]), agent, hw)
    assert workflow.state == "failed"
    target = workflow.targets.get()
    assert target.state == "rolled-back"
    server = UltraServer.objects.get(pk=in_service[0].pk)
    assert (server.firmware_version, server.lifecycle_state) == ("1.0", "in-service")


def test_health_check_failure_boots_the_old_bank(in_service, agent, hw):
    serial = in_service[0].serial
    hw.box(serial).bad_chips = [7]
    workflow = drive(upgrade(in_service[:1]), agent, hw)
    target = workflow.targets.get()
    assert target.state == "rolled-back", target.error
    assert hw.box(serial).firmware == "1.0" and hw.box(serial).inactive == "2.0"
    server = UltraServer.objects.get(pk=in_service[0].pk)
    assert server.firmware_version == "1.0"
    assert server.chips.get(index=7).health == "failed"


def test_failure_without_a_second_bank_ends_failed_with_real_state(in_service, agent):
    from tests.support.hardware import SimHardware

    hw = SimHardware(ab_banked=False)
    hw.box(in_service[0].serial).bad_chips = [1, 2]
    workflow = drive(upgrade(in_service[:1]), agent, hw)
    target = workflow.targets.get()
    assert (workflow.state, target.state) == ("failed", "failed")
    assert target.verified_state["failed_chips"][0]["index"] == 1
    server = UltraServer.objects.get(pk=in_service[0].pk)
    assert server.lifecycle_state == "upgrade-failed"
    assert server.in_maintenance and "chips failed" in server.fault_reason


def test_failure_budget_pauses_the_rollout(in_service, agent, hw):
    for server in in_service[1:3]:
        hw.box(server.serial).bad_chips = [3]
    workflow = drive(upgrade(in_service, max_failures=1, canary_size=1), agent, hw)
    assert workflow.state == "paused"
    assert "failure budget exceeded" in workflow.state_reason
    assert workflow.targets.filter(state="pending").count() == 3  # nothing new started

    services.resume(workflow, CTX, {"max_failures": 5})
    workflow = drive(workflow, agent, hw)
    assert workflow.state == "failed"
    assert workflow.targets.filter(state="succeeded").count() == 4


def test_max_unavailable_per_failure_domain(in_service, agent, hw, fleet):
    """Two servers in one rack: never both in the same batch."""
    from factory.catalog.models import UltraServerModel
    from provisioning.models import FirmwareRelease
    from tests.support.fleet import make_rack, make_server
    from tests.support.workflows import put_in_service

    trn2 = UltraServerModel.objects.get(slug="trn2-ultraserver")
    FirmwareRelease.objects.create(model=trn2, version="2.0", origin="https://fw.example")
    rack = make_rack(
        fleet.sites["alpha"], "ALP1-R77", cooling="air", cooling_kw="500", amperage=800
    )
    pair = [
        put_in_service(make_server(f"PAIR-{i}", "trn2-ultraserver", rack=rack, position=1 + 20 * i))
        for i in range(2)
    ]
    workflow = drive(upgrade(pair, canary_size=0, batch_size=10), agent, hw)
    assert workflow.state == "succeeded"
    assert sorted(workflow.targets.values_list("batch", flat=True)) == [0, 1]


def test_waits_for_an_approved_window(in_service, agent, hw):
    from provisioning.models import MaintenanceWindow

    MaintenanceWindow.objects.update(status="proposed")
    workflow = drive(upgrade(in_service[:1]), agent, hw, rounds=3)
    assert workflow.state == "running"
    assert "no tenant-approved maintenance window" in workflow.state_reason
    assert not AgentCommand.objects.exists()  # nothing disruptive happened


def test_pause_and_cancel(in_service, agent, hw):
    workflow = upgrade(in_service)
    services.pause(workflow, CTX, reason="test")
    workflow = drive(workflow, agent, hw, rounds=3)
    assert workflow.state == "paused" and not AgentCommand.objects.exists()
    services.resume(workflow, CTX)
    services.cancel(workflow, CTX, reason="test")
    workflow = drive(workflow, agent, hw)
    assert workflow.state == "cancelled"
    assert set(workflow.targets.values_list("state", flat=True)) == {"skipped"}
    assert not workflow.targets.filter(active=True).exists()


def test_a_step_past_its_deadline_fails_with_the_recorded_state(in_service, agent, hw):
    import datetime as dt

    from django.utils import timezone

    from provisioning import jobs, rollout, runner

    workflow = upgrade(in_service[:1])
    rollout.advance(workflow.pk)
    drain = Step.objects.get(workflow=workflow, name="drain")
    runner.run_step(drain.pk)  # submitted; the agent never answers
    drain.refresh_from_db()
    assert drain.state == "waiting" and drain.deadline_at is not None
    Step.objects.filter(pk=drain.pk).update(
        deadline_at=timezone.now() - dt.timedelta(seconds=1),
        next_check_at=timezone.now() + dt.timedelta(hours=1),
    )
    assert jobs.reconcile()["past_deadline"] == 1
    runner.run_step(drain.pk)
    drain.refresh_from_db()
    assert drain.state == "failed" and "passed its deadline" in drain.error
    target = workflow.targets.get()
    assert target.state == "failed"
    # the agent never answered: what is on record is the control plane's own view
    assert target.verified_state == {
        "source": "control-plane record",
        "lifecycle_state": "draining",
        "firmware_version": "1.0",
    }
    server = UltraServer.objects.get(pk=in_service[0].pk)
    assert server.lifecycle_state == "drain-failed" and server.in_maintenance
