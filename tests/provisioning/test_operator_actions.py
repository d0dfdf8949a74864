"""Operator actions on a bad day: the failure budget stops the batch in time; retry, skip and
force-release one server; abort and roll back the batch in flight. Driven in-process against
real PostgreSQL and the simulated hardware, through the API where a person would act."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.utils import timezone

from factory.agents.models import AgentCommand
from factory.inventory.models import UltraServer
from factory.wire import CommandKind
from provisioning import attention, operator_actions, rollout, services
from provisioning.choices import HOLD_RISKY_BATCH
from provisioning.models import Step, Workflow, WorkflowEvent, WorkflowTarget
from tenants.errors import Conflict, Invalid
from tenants.models import AuditEvent
from tests.support.api import assert_error_body
from tests.support.fleet import CTX
from tests.support.harness import answer_commands, drive, expire_lost_commands, run_due_steps

pytestmark = pytest.mark.django_db

FAST = {
    "soak_seconds": 0,
    "poll_seconds": 1,
    "canary_size": 0,
    "max_failures": 1,
    "max_unavailable_per_domain": 0,
}


def upgrade(servers, **spec):
    workflow, created = services.create_workflow(
        "upgrade", servers, CTX, spec={"firmware_version": "2.0", **FAST, **spec}
    )
    assert created
    return workflow


def settle(workflow, agent, hw, rounds: int = 30):
    """``drive``, but on through a pause: what a paused workflow's servers still do."""
    for _ in range(rounds):
        answer_commands(agent, hw)
        run_due_steps(workflow.pk)
        answer_commands(agent, hw)
        expire_lost_commands()
        rollout.advance(workflow.pk)
    workflow.refresh_from_db()
    return workflow


def target_of(workflow, server) -> WorkflowTarget:
    return workflow.targets.get(ultraserver=server)


def stopped_batch(servers, agent, hw, *, flash_fails: bool = True):
    """Three servers in one batch with a budget of 1. The first fails (its drain passes its
    deadline) while its batch-mates' drains finish; each of them would fail its flash."""
    if flash_fails:
        for server in servers[1:]:
            hw.flash_failures[server.serial] = 99
    workflow = upgrade(servers, batch_size=len(servers))
    rollout.advance(workflow.pk)
    run_due_steps(workflow.pk)  # the three drains sent
    Step.objects.filter(target__ultraserver=servers[0], name="drain").update(
        deadline_at=timezone.now() - dt.timedelta(seconds=1)
    )
    return drive(workflow, agent, hw)


# --- The failure budget stops in time ---------------------------------------------------------


def test_budget_of_one_holds_the_batch_mates_before_they_flash(in_service, agent, hw):
    servers = in_service[:3]
    workflow = stopped_batch(servers, agent, hw)
    assert workflow.state == "paused", workflow.state_reason
    assert f"failure budget reached: 1 of 3 failed ({servers[0].serial};" in workflow.state_reason
    states = dict(workflow.targets.values_list("ultraserver__serial", "state"))
    assert list(states.values()).count("failed") == 1  # not 2 or 3
    assert states[servers[0].serial] == "failed"
    # the batch-mates' flashes never started: no flash command was ever sent
    assert not AgentCommand.objects.filter(kind=CommandKind.FLASH_FIRMWARE).exists()
    for server in servers[1:]:
        flash = Step.objects.get(target__ultraserver=server, name="flash")
        assert flash.state == "waiting" and not flash.external_ref and flash.output["held"]
        assert hw.box(server.serial).firmware == "1.0"
    assert WorkflowEvent.objects.filter(workflow=workflow, kind="step-held").count() == 2
    # still held however often the steps are looked at while paused
    workflow = settle(workflow, agent, hw, rounds=5)
    assert not AgentCommand.objects.filter(kind=CommandKind.FLASH_FIRMWARE).exists()
    assert workflow.targets.filter(state="failed").count() == 1


def test_resume_lets_the_held_steps_start(in_service, agent, hw):
    servers = in_service[:3]
    workflow = stopped_batch(servers, agent, hw, flash_fails=False)
    services.resume(workflow, CTX)
    workflow = drive(workflow, agent, hw)
    assert workflow.state == "failed"  # the first server's failure stays
    states = sorted(workflow.targets.values_list("state", flat=True))
    assert states == ["failed", "succeeded", "succeeded"]


def test_cancel_while_held_puts_the_servers_back_unflashed(in_service, agent, hw):
    servers = in_service[:3]
    workflow = stopped_batch(servers, agent, hw)
    services.cancel(workflow, CTX, reason="firmware 2.0 is withdrawn")
    workflow = drive(workflow, agent, hw)
    assert workflow.state == "cancelled", workflow.state_reason
    assert not AgentCommand.objects.filter(kind=CommandKind.FLASH_FIRMWARE).exists()
    for server in UltraServer.objects.filter(pk__in=[s.pk for s in servers[1:]]):
        assert target_of(workflow, server).state == "skipped"
        assert (server.lifecycle_state, server.firmware_version) == ("in-service", "1.0")
        assert not hw.box(server.serial).drained and not server.in_maintenance
    assert not workflow.targets.filter(active=True).exists()


def test_budget_not_reached_does_not_hold(in_service, agent, hw):
    servers = in_service[:3]
    hw.flash_failures[servers[1].serial] = 0
    workflow = upgrade(servers, batch_size=3, max_failures=2, max_failure_pct=100.0)
    rollout.advance(workflow.pk)
    run_due_steps(workflow.pk)
    Step.objects.filter(target__ultraserver=servers[0], name="drain").update(
        deadline_at=timezone.now() - dt.timedelta(seconds=1)
    )
    workflow = drive(workflow, agent, hw)
    assert workflow.state == "failed"  # ran to the end: 1 of 3 failed, within the budget
    assert workflow.targets.filter(state="succeeded").count() == 2


def test_resume_ends_the_hold_and_a_later_pause_by_a_person_holds_nothing(in_service, agent, hw):
    servers = in_service[:3]
    workflow = stopped_batch(servers, agent, hw, flash_fails=False)
    assert workflow.spec[HOLD_RISKY_BATCH] == 0
    services.resume(workflow, CTX)
    workflow.refresh_from_db()
    assert HOLD_RISKY_BATCH not in workflow.spec
    # A person's pause lets the servers mid-upgrade finish: their flashes are not held.
    services.pause(workflow, CTX, reason="change freeze from now on")
    workflow = settle(workflow, agent, hw, rounds=6)
    assert workflow.state == "failed"  # everything finished while paused: ends on its own
    assert AgentCommand.objects.filter(kind=CommandKind.FLASH_FIRMWARE).count() == 2
    assert sorted(workflow.targets.values_list("state", flat=True)) == [
        "failed",
        "succeeded",
        "succeeded",
    ]


def test_a_pause_by_a_person_after_a_budget_pause_is_not_shown_as_the_budgets(
    in_service, agent, hw
):
    servers = in_service[:3]
    workflow = stopped_batch(servers, agent, hw)
    shown = attention.needs_action(workflow)
    assert shown is not None and shown["kind"] == "paused-budget"
    assert shown["detail"]["failed_serials"] == [servers[0].serial]
    services.resume(workflow, CTX)
    services.pause(workflow, CTX, reason="the vendor asked us to wait")
    workflow.refresh_from_db()
    shown = attention.needs_action(workflow)
    assert shown is not None
    assert (shown["kind"], shown["message"]) == ("paused", "the vendor asked us to wait")


def _rolling_back(target: WorkflowTarget) -> bool:
    target.refresh_from_db()
    return target.state == "running" and target.steps.filter(state="failed").exists()


def test_resume_while_a_rollback_runs_does_not_pause_again_at_once(in_service, agent, hw):
    """The failed server's rollback is under way when a person resumes: its end is the
    failure the resume acknowledged, not a new one."""
    servers = in_service[:3]
    hw.box(servers[0].serial).bad_chips = [7]  # fails its health check, boots the old bank
    workflow = upgrade(servers, batch_size=2, max_failures=0, max_failure_pct=100.0)
    failing = target_of(workflow, servers[0])
    for _ in range(30):
        answer_commands(agent, hw)
        run_due_steps(workflow.pk)
        rollout.advance(workflow.pk)
        if _rolling_back(failing):
            break
    assert _rolling_back(failing), failing.state
    workflow.refresh_from_db()
    assert workflow.state == "paused", workflow.state_reason
    shown = attention.needs_action(workflow)  # counted as the budget counts it
    assert shown is not None and shown["detail"]["failed_serials"] == [servers[0].serial]
    services.resume(workflow, CTX)
    resumed = WorkflowEvent.objects.filter(workflow=workflow, kind="resumed").latest("pk")
    workflow = drive(workflow, agent, hw)
    assert workflow.state == "failed", workflow.state_reason  # ran to the end, not paused
    assert not WorkflowEvent.objects.filter(
        workflow=workflow, kind="budget-exceeded", pk__gt=resumed.pk
    ).exists()
    states = dict(workflow.targets.values_list("ultraserver_id", "state"))
    assert states == {
        servers[0].pk: "rolled-back",
        servers[1].pk: "succeeded",
        servers[2].pk: "succeeded",
    }


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_hold_for_budget_does_not_wait_for_a_workflow_row_another_holds(in_service):
    """The failing step's transaction has its steps and server locked; a cancel or an operator
    action holding the workflow's row locks those after it. Waiting for the row would deadlock:
    the hold is skipped, and the advance after it applies it under the row's lock."""
    from django.db import connection, transaction

    servers = in_service[:3]
    workflow = upgrade(servers, batch_size=3)
    rollout.advance(workflow.pk)  # the batch of three is in flight
    WorkflowTarget.objects.filter(workflow=workflow, ultraserver=servers[0]).update(
        state="failed", active=False, error="drain passed its deadline"
    )
    locked, release = threading.Event(), threading.Event()

    def operator() -> None:  # a second connection holds the workflow's row
        try:
            with transaction.atomic():
                Workflow.objects.select_for_update().get(pk=workflow.pk)
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=operator)
    thread.start()
    try:
        assert locked.wait(10)
        with transaction.atomic():
            with connection.cursor() as cursor:  # waiting would fail the test, not hang it
                cursor.execute("SET LOCAL lock_timeout = '5s'")
            started = time.monotonic()
            assert rollout.hold_for_budget(workflow.pk) is False
            assert time.monotonic() - started < 2
    finally:
        release.set()
        thread.join(30)
    workflow.refresh_from_db()
    assert workflow.state == "running"
    assert rollout.advance(workflow.pk) == "paused"  # the queued advance applies the hold
    workflow.refresh_from_db()
    assert workflow.spec[HOLD_RISKY_BATCH] == 0
    assert f"failure budget reached: 1 of 3 failed ({servers[0].serial};" in workflow.state_reason
    with transaction.atomic():  # as the failing step's transaction calls it
        assert rollout.hold_for_budget(workflow.pk) is False  # paused: nothing more to do


# --- Services: retry, skip, force-release -------------------------------------------------------


def test_retry_runs_the_failed_step_again(in_service, agent, hw):
    servers = in_service[:3]
    workflow = stopped_batch(servers, agent, hw, flash_fails=False)
    failed = target_of(workflow, servers[0])
    assert UltraServer.objects.get(pk=servers[0].pk).lifecycle_state == "drain-failed"
    operator_actions.retry_target(workflow, failed.pk, "deadline was too tight", CTX)
    failed.refresh_from_db()
    assert (failed.state, failed.active, failed.error) == ("running", True, "")
    server = UltraServer.objects.get(pk=servers[0].pk)
    assert server.lifecycle_state == "draining" and not server.in_maintenance
    drain = Step.objects.get(target=failed, name="drain")
    assert (drain.state, drain.input["retried_by"]) == ("ready", CTX.actor.username)
    services.resume(workflow, CTX)
    workflow = drive(workflow, agent, hw)
    assert workflow.state == "succeeded", workflow.state_reason
    assert hw.box(servers[0].serial).firmware == "2.0"
    event = WorkflowEvent.objects.get(workflow=workflow, kind="retry")
    assert event.actor == CTX.actor.username and "deadline was too tight" in event.message
    audit = AuditEvent.objects.get(object_type="provisioning.workflow", after__verb="retry")
    assert audit.reason == "deadline was too tight"
    assert audit.after["ultraservers"] == [servers[0].pk]


def test_skip_puts_a_held_server_back_then_marks_it_skipped(in_service, agent, hw):
    servers = in_service[:3]
    workflow = stopped_batch(servers, agent, hw)
    held = target_of(workflow, servers[1])
    operator_actions.skip_target(workflow, held.pk, "leave it for next week", CTX)
    workflow = settle(workflow, agent, hw, rounds=4)
    held.refresh_from_db()
    assert (held.state, held.active) == ("skipped", False)
    server = UltraServer.objects.get(pk=servers[1].pk)
    assert (server.lifecycle_state, server.firmware_version) == ("in-service", "1.0")
    assert not hw.box(server.serial).drained
    flash = Step.objects.get(target=held, name="flash")
    assert flash.state == "skipped" and flash.output["skipped_by"] == CTX.actor.username
    assert not AgentCommand.objects.filter(kind=CommandKind.FLASH_FIRMWARE).exists()


def test_skip_a_failed_server_releases_it_with_its_verified_state(in_service, agent, hw):
    servers = in_service[:3]
    workflow = stopped_batch(servers, agent, hw)
    failed = target_of(workflow, servers[0])
    verified = failed.verified_state
    operator_actions.skip_target(workflow, failed.pk, "known bad", CTX)
    failed.refresh_from_db()
    assert (failed.state, failed.active, failed.verified_state) == ("skipped", False, verified)
    with pytest.raises(Conflict) as refused:
        operator_actions.skip_target(workflow, failed.pk, "again", CTX)
    assert refused.value.code == "target_skipped"


def test_force_release_flags_the_server_for_maintenance(in_service, agent, hw):
    servers = in_service[:3]
    workflow = stopped_batch(servers, agent, hw)
    stuck = target_of(workflow, servers[2])
    operator_actions.force_release(workflow, stuck.pk, "BMC wedged", CTX)
    stuck.refresh_from_db()
    assert (stuck.state, stuck.active) == ("failed", False)
    assert stuck.verified_state["source"] == "not verified: force-released"
    assert not stuck.steps.exclude(state__in=["succeeded", "skipped", "failed"]).exists()
    server = UltraServer.objects.get(pk=servers[2].pk)
    assert server.in_maintenance and "BMC wedged" in server.fault_reason
    assert AuditEvent.objects.filter(
        object_type="inventory.ultraserver", object_id=str(server.pk), after__in_maintenance=True
    ).exists()
    with pytest.raises(Conflict) as refused:  # its hold is gone
        operator_actions.force_release(workflow, stuck.pk, "again", CTX)
    assert refused.value.code == "target_failed"


@pytest.mark.parametrize("fn", ["retry_target", "skip_target", "force_release"])
def test_every_action_needs_a_reason(in_service, agent, hw, fn):
    workflow = stopped_batch(in_service[:3], agent, hw)
    target = target_of(workflow, in_service[0])
    with pytest.raises(Invalid) as refused:
        getattr(operator_actions, fn)(workflow, target.pk, "   ", CTX)
    assert (refused.value.code, refused.value.field) == ("required", "reason")
    with pytest.raises(Invalid):
        operator_actions.abort_batch(workflow, "", CTX)


def test_retry_refuses_a_server_that_did_not_fail(in_service, agent, hw):
    workflow = stopped_batch(in_service[:3], agent, hw)
    held = target_of(workflow, in_service[1])
    with pytest.raises(Conflict) as refused:
        operator_actions.retry_target(workflow, held.pk, "why not", CTX)
    assert (refused.value.code, refused.value.field) == ("target_running", "state")


# --- Abort and roll back the batch in flight --------------------------------------------------


def flashed_batch(servers, agent, hw, batch_size: int):
    """A first batch whose servers all run the new firmware, their health checks out."""
    workflow = upgrade(servers, batch_size=batch_size)
    for _ in range(20):
        answer_commands(agent, hw)
        run_due_steps(workflow.pk)
        rollout.advance(workflow.pk)
        if (
            not Step.objects.filter(workflow=workflow, name="flash", target__batch=0)
            .exclude(state="succeeded")
            .exists()
        ):
            break
    workflow.refresh_from_db()
    return workflow


def test_abort_batch_rolls_back_the_flashed_servers_and_pauses(in_service, agent, hw):
    workflow = flashed_batch(in_service[:3], agent, hw, batch_size=2)
    servers = [t.ultraserver for t in workflow.targets.filter(batch=0)]
    assert len(servers) == 2 and all(hw.box(s.serial).firmware == "2.0" for s in servers)
    operator_actions.abort_batch(workflow, "new firmware drops links", CTX)
    workflow.refresh_from_db()
    assert workflow.state == "paused" and "aborted" in workflow.state_reason
    workflow = settle(workflow, agent, hw, rounds=8)
    assert workflow.state == "paused"  # the third server waits, not started
    states = dict(workflow.targets.values_list("ultraserver_id", "state"))
    assert sorted(states.values()) == ["pending", "rolled-back", "rolled-back"]
    for server in UltraServer.objects.filter(pk__in=[s.pk for s in servers]):
        assert (server.lifecycle_state, server.firmware_version) == ("in-service", "1.0")
        assert hw.box(server.serial).firmware == "1.0" and not hw.box(server.serial).drained
    assert not workflow.targets.filter(active=True, batch=0).exists()
    event = WorkflowEvent.objects.get(workflow=workflow, kind="batch-aborted")
    assert event.actor == CTX.actor.username and "new firmware drops links" in event.message
    audit = AuditEvent.objects.get(object_type="provisioning.workflow", after__verb="abort-batch")
    assert sorted(audit.after["ultraservers"]) == sorted(s.pk for s in servers)
    assert audit.reason == "new firmware drops links"


def test_abort_batch_rolls_back_servers_already_back_in_service(in_service, agent, hw):
    workflow = upgrade(in_service[:3], batch_size=2, soak_seconds=3600)
    workflow = settle(workflow, agent, hw, rounds=10)  # soaking after the batch
    batch = workflow.targets.filter(batch=0)
    servers = [t.ultraserver for t in batch]
    assert set(batch.values_list("state", flat=True)) == {"succeeded"}
    operator_actions.abort_batch(workflow, "soak shows errors", CTX)
    workflow = settle(workflow, agent, hw, rounds=10)
    assert set(batch.values_list("state", flat=True)) == {"rolled-back"}
    assert workflow.state == "paused"
    for server in UltraServer.objects.filter(pk__in=[s.pk for s in servers]):
        assert (server.lifecycle_state, server.firmware_version) == ("in-service", "1.0")
        assert not hw.box(server.serial).drained


def test_abort_batch_holds_the_servers_not_yet_flashed(in_service, agent, hw):
    servers = in_service[:2]
    workflow = upgrade(servers, batch_size=2)
    rollout.advance(workflow.pk)
    run_due_steps(workflow.pk)  # drains sent
    operator_actions.abort_batch(workflow, "stop now", CTX)
    workflow = settle(workflow, agent, hw, rounds=5)
    assert workflow.state == "paused"
    assert not AgentCommand.objects.filter(kind=CommandKind.FLASH_FIRMWARE).exists()
    assert all(hw.box(s.serial).firmware == "1.0" for s in servers)
    services.resume(workflow, CTX)  # the hold ends with the pause
    assert drive(workflow, agent, hw).state == "succeeded"


# --- The API ----------------------------------------------------------------------------------


def test_api_actions_answer_and_refuse_by_name(fleet, in_service, agent, hw):
    workflow = stopped_batch(in_service[:3], agent, hw)
    failed = target_of(workflow, in_service[0])
    held = target_of(workflow, in_service[1])
    url = f"/api/v1/workflows/{workflow.pk}/"
    admin = fleet.client("provider_admin")
    missing = assert_error_body(admin.post(url + f"targets/{failed.pk}/retry/", {}), 400)
    assert missing["errors"][0]["field"] == "reason"
    wrong = assert_error_body(admin.post(url + f"targets/{held.pk}/retry/", {"reason": "x"}), 409)
    assert (wrong["code"], wrong["errors"][0]["field"]) == ("target_running", "state")
    nobody = assert_error_body(admin.post(url + "targets/999999/skip/", {"reason": "x"}), 404)
    assert nobody["errors"][0]["field"] == "target_id"
    stale = assert_error_body(
        admin.post(url + f"targets/{failed.pk}/retry/", {"reason": "x"}, HTTP_IF_MATCH='"stale"'),
        412,
    )
    assert stale["errors"][0]["field"] == "If-Match"
    assert target_of(workflow, in_service[0]).state == "failed"  # nothing done
    tenant = fleet.client("alpha_admin")
    assert_error_body(tenant.post(url + f"targets/{failed.pk}/retry/", {"reason": "x"}), 403)
    other = fleet.client("beta_admin")  # refused by role first, as for pause; unseen anyway
    assert_error_body(other.post(url + f"targets/{failed.pk}/retry/", {"reason": "x"}), 403)
    assert_error_body(other.post(url + "abort-batch/", {"reason": "x"}), 403)
    assert other.get(url).status_code == 404

    etag = admin.get(url)["ETag"]
    done = admin.post(
        url + f"targets/{failed.pk}/retry/", {"reason": "try again"}, HTTP_IF_MATCH=etag
    )
    assert done.status_code == 200, done.content
    assert (done.json()["id"], done.json()["state"]) == (failed.pk, "running")
    skipped = admin.post(url + f"targets/{held.pk}/skip/", {"reason": "later"})
    assert skipped.status_code == 200, skipped.content
    released = admin.post(
        url + f"targets/{target_of(workflow, in_service[2]).pk}/force-release/",
        {"reason": "stuck"},
    )
    assert released.status_code == 200 and released.json()["state"] == "failed"
    aborted = admin.post(url + "abort-batch/", {"reason": "enough"})
    assert aborted.status_code == 200, aborted.content
    assert aborted.json()["state"] == "paused" and aborted["ETag"] == admin.get(url)["ETag"]


# --- Bulk put-in-service ----------------------------------------------------------------------

PUT = "/api/v1/ultraservers/put-in-service/"


def ready_servers(site, count: int, prefix: str) -> list[UltraServer]:
    """``count`` deployed (ready) UltraServers at ``site``, one per rack."""
    from factory.inventory import lifecycle
    from factory.inventory.services import transition
    from tests.support.fleet import make_rack, make_server

    servers = []
    for i in range(count):
        rack = make_rack(site, f"{site.code}-{prefix}{i:02d}")
        server = make_server(f"{site.code}-{prefix}-S{i}", rack=rack)
        for state in (lifecycle.INSTALLING, lifecycle.BURN_IN, lifecycle.READY):
            server = transition(server.pk, state, CTX)
        servers.append(server)
    return servers


def test_put_in_service_many_in_one_action_with_flat_queries(fleet):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    site = fleet.sites["alpha"]
    few, many = ready_servers(site, 2, "F"), ready_servers(site, 6, "M")
    admin = fleet.client("provider_admin")
    admin.get("/api/v1/ultraservers/?limit=1")  # the token and session warmed up
    counts = []
    for batch in (few, many):
        with CaptureQueriesContext(connection) as queries:
            answer = admin.post(
                PUT, {"ultraservers": [s.pk for s in batch], "reason": "handover"}, format="json"
            )
        assert answer.status_code == 200, answer.content
        assert answer.json()["changed"] == [s.pk for s in batch]
        counts.append(len(queries))
    assert counts[0] == counts[1], counts  # the same for 2 as for 6
    states = set(
        UltraServer.objects.filter(pk__in=[s.pk for s in few + many]).values_list(
            "lifecycle_state", flat=True
        )
    )
    assert states == {"in-service"}
    audits = AuditEvent.objects.filter(
        object_type="inventory.ultraserver",
        object_id__in=[str(s.pk) for s in many],
        after__lifecycle_state="in-service",
    )
    assert audits.count() == 6 and set(audits.values_list("reason", flat=True)) == {"handover"}
    assert {a.before["lifecycle_state"] for a in audits} == {"ready"}
    again = admin.post(PUT, {"ultraservers": [few[0].pk]}, format="json")  # no-op, not refused
    assert again.status_code == 200 and again.json()["changed"] == []


def test_put_in_service_is_all_or_nothing_naming_the_refused(fleet, in_service):
    site = fleet.sites["alpha"]
    ready = ready_servers(site, 2, "A")
    flagged = ready_servers(site, 1, "B")[0]
    UltraServer.objects.filter(pk=flagged.pk).update(in_maintenance=True, fault_reason="fan")
    admin = fleet.client("provider_admin")
    serving = in_service[0].pk  # in service already: left as it is, not refused
    body = {"ultraservers": [ready[0].pk, flagged.pk, ready[1].pk, serving]}
    refused = assert_error_body(admin.post(PUT, body, format="json"), 409)
    assert [e["field"] for e in refused["errors"]] == ["ultraservers[1]"]
    assert refused["errors"][0]["code"] == "in_maintenance"
    assert set(
        UltraServer.objects.filter(pk__in=[s.pk for s in ready]).values_list(
            "lifecycle_state", flat=True
        )
    ) == {"ready"}  # nothing changed
    other = fleet.servers["beta"]
    elsewhere = assert_error_body(
        admin.post(PUT, {"ultraservers": [ready[0].pk, other.pk], "site": site.pk}, format="json"),
        400,
    )
    assert elsewhere["errors"][0]["field"] == "ultraservers[1]"
    twice = assert_error_body(
        admin.post(PUT, {"ultraservers": [ready[0].pk, ready[0].pk]}, format="json"), 400
    )
    assert twice["errors"][0]["field"] == "ultraservers[1]"
    assert_error_body(admin.post(PUT, {"ultraservers": []}, format="json"), 400)


def test_put_in_service_is_tenant_scoped(fleet):
    site = fleet.sites["alpha"]
    ready = ready_servers(site, 1, "T")
    beta = fleet.servers["beta"]
    admin = fleet.client("provider_admin")
    unknown = assert_error_body(
        admin.post(PUT, {"ultraservers": [ready[0].pk, 99999999]}, format="json"), 404
    )
    assert unknown["errors"][0]["field"] == "ultraservers[1]"
    tenant = fleet.client("alpha_admin")  # sees its own servers, may not put them in service
    assert_error_body(tenant.post(PUT, {"ultraservers": [ready[0].pk]}, format="json"), 403)
    planned = assert_error_body(admin.post(PUT, {"ultraservers": [beta.pk]}, format="json"), 409)
    assert (planned["code"], planned["errors"][0]["field"]) == (
        "invalid_transition",
        "ultraservers[0]",
    )
    assert UltraServer.objects.get(pk=ready[0].pk).lifecycle_state == "ready"


def test_put_in_service_audits_through_record_many_with_the_ambient_cause(fleet):
    """The bulk change writes its audit rows as ``audit.record`` would: the cause a job set
    (``acting_for``) when the context names none, the columns' lengths, each server's tenant."""
    from factory.inventory import services as inventory
    from tenants.access import SYSTEM
    from tenants.choices import AuditCause
    from tenants.services import audit
    from tenants.services.changes import ChangeContext

    site = fleet.sites["alpha"]
    servers = ready_servers(site, 2, "C")
    run = ChangeContext(SYSTEM, request_id="req-handover").caused_by(
        AuditCause.JOB, "run-" + "7" * 90, on_behalf_of="padmin"
    )
    assert len(run.cause_id) == 64  # the context's own cut
    with audit.acting_for(run):  # a context naming no cause of its own
        changed = inventory.put_in_service(
            [s.pk for s in servers], ChangeContext(SYSTEM), reason="handover"
        )
    assert [s.pk for s in changed] == [s.pk for s in servers]
    rows = AuditEvent.objects.filter(
        object_type="inventory.ultraserver",
        object_id__in=[str(s.pk) for s in servers],
        after__lifecycle_state="in-service",
    )
    assert rows.count() == 2
    assert {(r.cause_type, r.cause_id, r.on_behalf_of, r.request_id) for r in rows} == {
        ("job", run.cause_id, "padmin", "req-handover")
    }
    assert {(r.tenant_id, r.reason, r.before["lifecycle_state"]) for r in rows} == {
        (fleet.alpha.pk, "handover", "ready")
    }
    # A cause of the context's own wins over the ambient one, cut to the 64-character column
    # (the hand-built rows cut it to 150 and the insert failed).
    more = ready_servers(site, 1, "D")
    rule = ChangeContext(SYSTEM, cause_type=AuditCause.RULE, cause_id="9" * 100)
    with audit.acting_for(run):
        inventory.put_in_service([more[0].pk], rule)
    row = AuditEvent.objects.filter(
        object_type="inventory.ultraserver", object_id=str(more[0].pk)
    ).latest("chain_seq")
    assert (row.cause_type, row.cause_id, row.request_id) == ("rule", "9" * 64, "")


# --- Console --------------------------------------------------------------------------------


def console(fleet, who: str):
    from django.test import Client

    client = Client()
    client.force_login(fleet.people[who])
    return client


def test_console_forms_act_with_a_reason_and_are_shown(fleet, in_service, agent, hw):
    from django.template.loader import render_to_string

    workflow = stopped_batch(in_service[:3], agent, hw)
    failed, held = target_of(workflow, in_service[0]), target_of(workflow, in_service[1])
    html = render_to_string(
        "console/_target_actions.html",
        {"workflow": workflow, "target": failed, "is_provider_admin": True},
    )
    assert f"/targets/{failed.pk}/retry/" in html and 'name="reason" required' in html
    assert "force-release" not in html  # a failed server holds nothing
    abort = render_to_string(
        "console/_batch_abort.html", {"workflow": workflow, "is_provider_admin": True}
    )
    assert f"/console/workflows/{workflow.pk}/abort-batch/" in abort
    tenant_view = render_to_string(
        "console/_target_actions.html",
        {"workflow": workflow, "target": failed, "is_provider_admin": False},
    )
    assert "<form" not in tenant_view  # a tenant sees no actions

    admin = console(fleet, "provider_admin")
    base = f"/console/workflows/{workflow.pk}/"
    blank = admin.post(base + f"targets/{failed.pk}/retry/", {"reason": " "})
    assert blank.status_code == 400 and "reason is required" in blank.content.decode()
    assert target_of(workflow, in_service[0]).state == "failed"  # nothing done without why
    done = admin.post(base + f"targets/{failed.pk}/retry/", {"reason": "from the console"})
    assert done.status_code == 302 and done["Location"].endswith(f"#target-{failed.pk}")
    assert target_of(workflow, in_service[0]).state == "running"
    audit = AuditEvent.objects.get(object_type="provisioning.workflow", after__verb="retry")
    assert (audit.source, audit.reason) == ("console", "from the console")
    refused = admin.post(base + f"targets/{held.pk}/retry/", {"reason": "x"})
    assert refused.status_code == 409
    assert (
        console(fleet, "alpha_admin")
        .post(base + f"targets/{held.pk}/skip/", {"reason": "x"})
        .status_code
        == 403
    )
    assert (
        console(fleet, "beta_admin").post(base + "abort-batch/", {"reason": "x"}).status_code == 404
    )
    aborted = admin.post(base + "abort-batch/", {"reason": "console abort"})
    assert aborted.status_code == 302
    assert WorkflowEvent.objects.filter(workflow=workflow, kind="batch-aborted").exists()
