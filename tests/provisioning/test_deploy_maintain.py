"""Deploy and maintain, step by step, with their sovereignty checks."""

import pytest
from django.utils import timezone

from factory import wire
from factory.agents.models import AgentCommand
from factory.inventory.models import UltraServer
from factory.telemetry import events as telemetry_events
from factory.telemetry.models import Fault
from provisioning import services
from provisioning.models import Notification, Step, Workflow
from tenants.errors import Conflict
from tenants.sovereignty.models import DecisionRecord, SovereigntyRule
from tenants.sovereignty.services import SovereigntyDenied, activate_rule
from tests.support.fleet import CTX, make_person
from tests.support.harness import drive
from tests.support.workflows import put_in_service

pytestmark = pytest.mark.django_db
FAST = {"poll_seconds": 1}


def test_deploy_runs_every_stage_to_ready(fleet, releases, agent, hw):
    server = fleet.servers["alpha"]
    hw.box(server.serial).firmware = "0.1"
    hw.box(server.serial).bad_chips = [5]
    workflow, _ = services.create_workflow("deploy", [server], CTX, spec=FAST)
    assert workflow.spec["firmware_version"] == "1.0"  # the model's baseline
    workflow = drive(workflow, agent, hw)
    assert workflow.state == "succeeded", workflow.state_reason
    names = list(Step.objects.filter(workflow=workflow).values_list("name", "state"))
    assert [n for n, _ in names] == [
        "preflight",
        "install",
        "firmware",
        "burn_in",
        "interconnect",
        "handover",
    ]
    assert {s for _, s in names} == {"succeeded"}
    server.refresh_from_db()
    assert (server.lifecycle_state, server.firmware_version) == ("ready", "1.0")
    assert server.chips.get(index=5).health == "failed"  # flagged, within max_bad_chips


def test_deploy_burn_in_failure_leaves_the_server_burn_in_failed(fleet, releases, agent, hw):
    server = fleet.servers["alpha"]
    hw.box(server.serial).bad_chips = [1, 2, 3]
    workflow, _ = services.create_workflow("deploy", [server], CTX, spec=FAST)
    workflow = drive(workflow, agent, hw)
    assert workflow.state == "failed"
    server.refresh_from_db()
    assert server.lifecycle_state == "burn-in-failed" and server.in_maintenance
    assert server.chips.filter(health="failed").count() == 3


def test_deploy_refused_by_artifact_provenance(fleet, releases, agent, hw):
    rule = SovereigntyRule.objects.create(
        tenant=fleet.alpha,
        name="only our mirror",
        kind="artifact_provenance",
        params={"origins": ["mirror.alpha.example"], "require_signature": True},
    )
    activate_rule(rule, CTX)
    # Refused at creation (issue 14): no workflow, no command, nothing touched.
    with pytest.raises(SovereigntyDenied):
        services.create_workflow("deploy", [fleet.servers["alpha"]], CTX, spec=FAST)
    assert not Workflow.objects.exists() and not AgentCommand.objects.exists()
    assert DecisionRecord.objects.filter(action="accept_artifact", allowed=False).exists()
    assert hw.executed == {}  # no hardware touched


def test_deploy_preflight_refuses_a_release_whose_root_was_revoked_since(
    fleet, releases, agent, hw
):
    """Checked again at deploy: a root revoked after creation vouches for nothing."""
    from tenants.sovereignty.models import TrustRoot
    from tenants.sovereignty.services import revoke_trust_root

    rule = SovereigntyRule.objects.create(
        tenant=fleet.alpha,
        name="signed firmware",
        kind="artifact_provenance",
        params={"origins": [releases["1.0"].origin], "require_signature": True},
    )
    activate_rule(rule, CTX)
    workflow, _ = services.create_workflow("deploy", [fleet.servers["alpha"]], CTX, spec=FAST)
    for root in TrustRoot.objects.all():
        revoke_trust_root(root, CTX, "key compromised")
    workflow = drive(workflow, agent, hw)
    assert workflow.state == "failed"
    preflight = Step.objects.get(workflow=workflow, name="preflight")
    assert "sovereignty denied" in preflight.error
    assert hw.executed == {}  # no hardware touched


def test_maintain_drains_dispatches_repairs_and_returns(fleet, releases, agent, hw):
    server = put_in_service(fleet.servers["alpha"])
    _, workflow = services.report_fault(server, "HBM ECC storm on chip 9", CTX)
    workflow = drive(workflow, agent, hw, rounds=4)
    server.refresh_from_db()
    assert (server.lifecycle_state, server.in_maintenance) == ("maintenance", True)
    assert Notification.objects.filter(tenant=fleet.alpha, kind="drain").exists()
    dispatch = Step.objects.get(workflow=workflow, name="dispatch")
    assert dispatch.state == "waiting"

    # someone abroad is refused by the personnel rule; the step waits for another person
    rule = SovereigntyRule.objects.create(
        tenant=fleet.alpha,
        name="DE staff only",
        kind="personnel",
        params={"nationalities": ["DE"], "min_clearance": "confidential", "in_country": True},
    )
    activate_rule(rule, CTX)
    outsider = make_person("far-tech", "provider-technician", nationality="US", residency="US")
    services.provide_input(
        workflow, "dispatch", None, {"technician": outsider.pk, "from_country": "US"}, CTX
    )
    workflow = drive(workflow, agent, hw, rounds=2)
    dispatch.refresh_from_db()
    assert dispatch.state == "waiting" and dispatch.output["denied"] == ["far-tech"]

    services.provide_input(
        workflow,
        "dispatch",
        None,
        {"technician": fleet.people["technician"].pk, "from_country": "DE"},
        CTX,
    )
    workflow = drive(workflow, agent, hw, rounds=2)
    services.record_part_replacement(workflow, server, CTX, part="HBM stack 9", rma_number="RMA-1")
    workflow = drive(workflow, agent, hw)
    assert workflow.state == "succeeded", workflow.state_reason
    server.refresh_from_db()
    assert (server.lifecycle_state, server.in_maintenance, server.fault_reason) == (
        "in-service",
        False,
        "",
    )
    assert DecisionRecord.objects.filter(action="access_site", allowed=True).exists()


def test_a_leak_isolated_server_is_repaired_powered_on_and_returned_without_a_drain(
    fleet, releases, agent, hw, django_capture_on_commit_callbacks
):
    server = put_in_service(fleet.servers["alpha"])
    leak = wire.Event(
        source=server.serial,
        kind=wire.EventKind.LEAK,
        message="LeakDetector Tray3ColdPlate: Critical",
        timestamp=timezone.now().isoformat(),
    )
    with django_capture_on_commit_callbacks(execute=True):
        telemetry_events.record_events(agent, [dict(leak)])
    workflow = Workflow.objects.get(kind="maintain")
    workflow = drive(workflow, agent, hw, rounds=4)
    assert hw.box(server.serial).powered is False  # the isolation's ForceOff ran
    drain = Step.objects.get(workflow=workflow, name="drain")
    assert drain.state == "succeeded", drain.error
    assert drain.output["isolated"] is True
    assert not AgentCommand.objects.filter(ultraserver=server, kind="drain").exists()

    services.provide_input(
        workflow,
        "dispatch",
        None,
        {"technician": fleet.people["technician"].pk, "from_country": "DE"},
        CTX,
    )
    workflow = drive(workflow, agent, hw, rounds=2)
    services.record_part_replacement(workflow, server, CTX, part="cold plate 3", rma_number="R-7")
    workflow = drive(workflow, agent, hw)
    assert workflow.state == "succeeded", workflow.state_reason
    server.refresh_from_db()
    assert server.isolated_since is None and server.isolation_reason == ""
    assert (server.lifecycle_state, server.in_maintenance) == ("in-service", False)
    assert hw.box(server.serial).powered is True  # powered on after the repair, for verify
    assert not Fault.objects.filter(ultraserver=server, cleared_at__isnull=True).exists()


def test_capacity_floor_refuses_a_drain(fleet, releases):
    from provisioning.models import CapacityFloor

    server = put_in_service(fleet.servers["alpha"])
    CapacityFloor.objects.create(site=fleet.sites["alpha"], min_in_service=1)
    with pytest.raises(Conflict) as refused:
        services.create_workflow("maintain", [server], CTX, reason="planned")
    assert refused.value.code == "capacity_floor"
    assert "below the tenant's capacity floor of 1" in refused.value.message


def test_one_active_workflow_per_server_and_idempotency(fleet, releases, in_service):
    first, created = services.create_workflow(
        "upgrade", in_service[:2], CTX, spec={"firmware_version": "2.0"}, idempotency_key="k1"
    )
    again, created_again = services.create_workflow(
        "upgrade", in_service[:2], CTX, spec={"firmware_version": "2.0"}, idempotency_key="k1"
    )
    assert created and not created_again and again.pk == first.pk
    with pytest.raises(Conflict) as refused:
        services.create_workflow("upgrade", in_service[1:3], CTX, spec={"firmware_version": "2.0"})
    assert refused.value.code == "held_by_workflow"
    assert f"is held by upgrade workflow #{first.pk}" in refused.value.message
    with pytest.raises(Conflict) as reused:
        services.create_workflow(
            "upgrade", in_service[3:4], CTX, spec={"firmware_version": "2.0"}, idempotency_key="k1"
        )
    assert reused.value.code == "idempotency_key_reused"


def test_wrong_state_is_refused_naming_it(fleet, releases):
    with pytest.raises(Conflict) as refused:
        services.create_workflow(
            "upgrade", [fleet.servers["alpha"]], CTX, spec={"firmware_version": "2.0"}
        )
    assert "ALP1-SRV1 (planned)" in refused.value.message
    assert UltraServer.objects.get(pk=fleet.servers["alpha"].pk).lifecycle_state == "planned"
