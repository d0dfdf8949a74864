"""Attribution of what workflows, jobs and rules do: a workflow's firmware change names the
person who started it, the workflow and the request; every steering action is an audit event;
a job's changes name its run, a rule's its fault; and a tenant's ``history/`` of a server
lists all of it in order, with who and why."""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from factory import wire
from factory.inventory.models import UltraServer
from factory.inventory.services import transition
from factory.telemetry import faults
from factory.telemetry.models import Fault
from factory.telemetry.rules import Finding
from factory.wire import FaultRule
from provisioning import jobs, rollout, services
from provisioning.attribution import workflow_ctx
from provisioning.models import JobRun, Step, Workflow
from tenants.access import actor_for
from tenants.choices import AuditSource
from tenants.models import AuditEvent
from tenants.services.changes import ChangeContext, save_object
from tests.support.api import gateway
from tests.support.fleet import CTX, make_rack
from tests.support.harness import answer_commands, drive, run_due_steps
from tests.support.schema import assert_conforms
from tests.support.telemetry import agent_client
from tests.support.workflows import put_in_service

pytestmark = pytest.mark.django_db
SERVER, WORKFLOW = "inventory.ultraserver", "provisioning.workflow"


def history_url(server) -> str:
    return f"/api/v1/ultraservers/{server.pk}/history/"


def person_ctx(fleet, who: str, request_id: str = "") -> ChangeContext:
    return ChangeContext(actor_for(fleet.people[who]), AuditSource.API, request_id)


def workflow_events(workflow) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(object_type=WORKFLOW, object_id=str(workflow.pk)).order_by(
            "chain_seq"
        )
    )


def upgrade_until_the_canary_is_flashed(fleet, servers, agent, hw) -> tuple[Workflow, object]:
    """An upgrade a person starts through the API, driven until its canary runs 2.0."""
    created = fleet.client("provider_admin").post(
        "/api/v1/workflows/",
        {
            "kind": "upgrade",
            "targets": {"ultraservers": [s.pk for s in servers]},
            "spec": {"firmware_version": "2.0", "soak_seconds": 3600, "poll_seconds": 1},
            "reason": "quarterly firmware",
        },
        format="json",
        HTTP_X_REQUEST_ID="req-upgrade-1",
    )
    assert created.status_code == 201, created.content
    workflow = Workflow.objects.get(pk=created.json()["id"])
    ids = [s.pk for s in servers]
    for _ in range(30):
        answer_commands(agent, hw)
        run_due_steps(workflow.pk)
        answer_commands(agent, hw)
        rollout.advance(workflow.pk)
        flashed = UltraServer.objects.filter(pk__in=ids, firmware_version="2.0").first()
        if flashed is not None and (flashed.lifecycle_state, flashed.in_maintenance) == (
            "in-service",
            False,
        ):
            return workflow, flashed
    raise AssertionError("the canary never finished its upgrade")


def test_a_workflow_firmware_change_names_its_starter_and_the_history_lists_it(
    fleet, in_service, agent, hw
):
    workflow, canary = upgrade_until_the_canary_is_flashed(fleet, in_service[:3], agent, hw)
    assert (workflow.started_by, workflow.request_id) == ("padmin", "req-upgrade-1")
    flash = AuditEvent.objects.filter(
        object_type=SERVER, object_id=str(canary.pk), after__firmware_version="2.0"
    ).exclude(before__firmware_version="2.0")
    (change,) = flash
    assert (change.actor_username, change.source) == ("system", "system")
    assert (change.on_behalf_of, change.cause_type, change.cause_id) == (
        "padmin",
        "workflow",
        str(workflow.pk),
    )
    assert change.request_id == "req-upgrade-1"

    admin = fleet.client("provider_admin")
    base = f"/api/v1/workflows/{workflow.pk}"
    paused = admin.post(f"{base}/pause/", {"reason": "the canary runs hot"}, format="json")
    assert paused.status_code == 200, paused.content
    assert admin.post(f"{base}/resume/", {}, format="json").status_code == 200
    cancelled = admin.post(f"{base}/cancel/", {"reason": "window closing"}, format="json")
    assert cancelled.status_code == 200, cancelled.content

    viewer = fleet.client("alpha_viewer")
    answer = viewer.get(history_url(canary), {"limit": 1000})
    assert answer.status_code == 200, answer.content
    assert_conforms(answer)  # the published schema types every field
    rows = answer.json()["results"]
    assert answer.json()["count"] == len(rows)
    times = [r["occurred_at"] for r in rows]
    assert times == sorted(times)
    mine = [r for r in rows if r["cause_type"] == "workflow" or r["object_type"] == WORKFLOW]
    verbs = [r["verb"] for r in mine if r["object_type"] == WORKFLOW]
    assert verbs == ["create", "pause", "resume", "cancel"]
    flashed = next(r for r in rows if r["id"] == change.pk)
    assert {"field": "firmware_version", "before": "1.0", "after": "2.0"} in flashed["changes"]
    assert (flashed["actor"], flashed["on_behalf_of"], flashed["cause_id"]) == (
        "system",
        "padmin",
        str(workflow.pk),
    )
    order = [r["id"] for r in rows]
    create, pause, cancel = (
        next(r for r in mine if r["verb"] == v) for v in ("create", "pause", "cancel")
    )
    assert order.index(create["id"]) < order.index(change.pk) < order.index(pause["id"])
    assert (pause["actor"], pause["reason"], pause["cause_type"]) == (
        "padmin",
        "the canary runs hot",
        "",
    )
    assert {"field": "state", "before": "running", "after": "paused"} in pause["changes"]
    assert (cancel["reason"], cancel["request_id"] != "") == ("window closing", True)
    assert create["request_id"] == "req-upgrade-1" and create["reason"] == "quarterly firmware"

    # A server of the same workflow that was never flashed lists the workflow's actions too.
    other = next(s for s in in_service[:3] if s.pk != canary.pk)
    others = viewer.get(history_url(other)).json()["results"]
    assert [r["verb"] for r in others if r["object_type"] == WORKFLOW] == verbs
    assert not any(
        r["object_type"] == WORKFLOW
        for r in viewer.get(history_url(in_service[4])).json()["results"]
    )

    # Filter by time; another tenant's server is not there at all.
    since = viewer.get(history_url(canary), {"since": pause["occurred_at"]}).json()["results"]
    assert [r["verb"] for r in since] == ["pause", "resume", "cancel"]
    assert fleet.client("beta_viewer").get(history_url(canary)).status_code == 404
    bad = viewer.get(history_url(canary), {"sinse": "2026-01-01"})
    assert bad.status_code == 400
    assert_conforms(bad)


def test_the_history_costs_the_same_queries_however_many_events(fleet, in_service, agent, hw):
    quiet, busy = in_service[4], in_service[5]
    for i in range(12):
        transition(busy.pk, "in-service", CTX, fields={"fault_reason": f"note {i}"})
    chip = busy.chips.first()
    chip.health_note = "looked at"
    save_object(chip, CTX)
    client = fleet.client("alpha_viewer")
    client.get(history_url(quiet))  # the token's first use is recorded once
    counts = []
    for server in (quiet, busy):
        with CaptureQueriesContext(connection) as queries:
            answer = client.get(history_url(server))
        assert answer.status_code == 200
        counts.append((len(queries), answer.json()["count"]))
    (quiet_q, quiet_n), (busy_q, busy_n) = counts
    assert busy_n >= quiet_n + 13
    assert busy_q == quiet_q
    rows = client.get(history_url(busy)).json()["results"]
    assert any(r["object_type"] == "inventory.chip" for r in rows)


def test_each_steering_action_is_an_audit_event(fleet, in_service, agent, hw):
    server = in_service[0]
    admin = person_ctx(fleet, "provider_admin", "req-maint")
    _, workflow = services.report_fault(server, "HBM ECC storm on chip 9", admin)
    workflow = drive(workflow, agent, hw, rounds=4)
    assert Step.objects.get(workflow=workflow, name="dispatch").state == "waiting"
    services.provide_input(
        workflow,
        "dispatch",
        None,
        {"technician": fleet.people["technician"].pk, "from_country": "DE"},
        admin,
    )
    workflow = drive(workflow, agent, hw, rounds=2)
    tech = person_ctx(fleet, "technician")
    services.record_part_replacement(workflow, server, tech, part="HBM stack 9", rma_number="R1")
    events = workflow_events(workflow)
    assert [(e.after or {}).get("verb") for e in events] == ["create", "input", "part-replaced"]
    create, given, part = events
    assert (create.actor_username, create.request_id, create.action) == (
        "padmin",
        "req-maint",
        "create",
    )
    assert create.after["ultraservers"] == [server.pk] and create.tenant_id == fleet.alpha.pk
    assert given.after["data"]["from_country"] == "DE" and given.after["step"] == "dispatch"
    assert (part.actor_username, part.after["part"], part.after["rma"]) == (
        "tech",
        "HBM stack 9",
        "R1",
    )
    # The drain the maintain workflow made is on the reporting person's behalf.
    drained = AuditEvent.objects.filter(
        object_type=SERVER,
        object_id=str(server.pk),
        cause_type="workflow",
        cause_id=str(workflow.pk),
    )
    assert drained.exists() and {e.on_behalf_of for e in drained} == {"padmin"}

    # The console's server page says the same: who, for whom, why.
    client = Client()
    client.force_login(fleet.people["alpha_viewer"])
    page = client.get(f"/console/ultraservers/{server.pk}/")
    assert page.status_code == 200
    touched = page.content.decode().split('id="server-history"', 1)[1]
    assert "part-replaced" in touched and "for padmin" in touched
    assert f"(Workflow {workflow.pk})" in touched

    # A proposed workflow (the compliance scan's) started later by a person: start is an
    # event, and the engine then works on that person's behalf.
    proposed, _ = services.create_workflow(
        "upgrade", in_service[1:2], CTX, spec={"firmware_version": "2.0"}, start=False
    )
    assert workflow_ctx(proposed).on_behalf_of == ""
    services.start(proposed, person_ctx(fleet, "provider_admin", "req-go"))
    proposed.refresh_from_db()
    assert [(e.after or {}).get("verb") for e in workflow_events(proposed)] == ["create", "start"]
    started = workflow_events(proposed)[-1]
    assert (started.before["state"], started.after["state"]) == ("proposed", "running")
    ctx = workflow_ctx(proposed)
    assert (ctx.on_behalf_of, ctx.request_id, ctx.cause_id) == (
        "padmin",
        "req-go",
        str(proposed.pk),
    )


def test_a_jobs_changes_name_its_run_and_a_rules_name_its_fault(fleet, in_service):
    server = in_service[2]
    transition(server.pk, "in-service", CTX, fields={"in_maintenance": True, "fault_reason": "x"})
    summary = jobs.health_sweep()
    (workflow_id,) = summary["opened"]
    run = JobRun.objects.filter(job="health-sweep").latest("started_at")
    (create,) = workflow_events(Workflow.objects.get(pk=workflow_id))
    assert (create.cause_type, create.cause_id, create.actor_username) == (
        "job",
        str(run.pk),
        "system",
    )
    # The health sweep's workflow was started by no person: its changes name nobody.
    assert workflow_ctx(Workflow.objects.get(pk=workflow_id)).on_behalf_of == ""

    target = in_service[3]
    chip = target.chips.get(index=3)
    last = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first()
    faults.raise_findings(
        target.rack.site_id, [(target.pk, Finding(FaultRule.CHIP_DOWN, "chip 3 down", chip=3))], []
    )
    fault = Fault.objects.get(ultraserver=target, rule=FaultRule.CHIP_DOWN)
    flagged = AuditEvent.objects.filter(
        object_type__in=[SERVER, "inventory.chip"],
        object_id__in=[str(target.pk), str(chip.pk)],
        pk__gt=last,
    )
    assert flagged.exists()
    assert {(e.cause_type, e.cause_id) for e in flagged} == {("rule", str(fault.pk))}


def test_an_agents_report_names_the_agent_where_no_nearer_cause_does(fleet):
    server = put_in_service(fleet.servers["alpha"])
    client, agent = agent_client(fleet.sites["alpha"])
    last = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first()
    event = wire.Event(
        source=server.serial,
        kind=wire.EventKind.LEAK,
        message="LeakDetector Tray3ColdPlate: Critical",
        timestamp=timezone.now().isoformat(),
    )
    answer = client.post(
        gateway(wire.EVENTS_PATH),
        wire.EventBatch(events=[event]),
        format="json",
        HTTP_X_REQUEST_ID="req-agent-7",
    )
    assert answer.status_code < 300, answer.content
    fault = Fault.objects.get(ultraserver=server, cleared_at__isnull=True)
    made = list(AuditEvent.objects.filter(pk__gt=last).order_by("pk"))
    causes = {(e.object_type, e.cause_type, e.cause_id, e.request_id) for e in made}
    assert (SERVER, "rule", str(fault.pk), "") in causes  # the fault is the nearer cause
    assert ("agents.agentcommand", "agent", str(agent.pk), "req-agent-7") in causes
    assert all(e.cause_type for e in made)


def test_a_moved_servers_new_owner_sees_none_of_the_old_owners_events(fleet, in_service):
    """History is scoped like the audit log: after a server moves to another tenant's rack, its
    new owner sees the events of its own chain only, not the old owner's people, reasons or
    request ids (in the API and on the console page); the provider still sees all of it."""
    server = in_service[5]
    alpha = person_ctx(fleet, "alpha_admin", "req-alpha-private")
    proposed, _ = services.create_workflow(
        "upgrade",
        [server],
        alpha,
        spec={"firmware_version": "2.0"},
        reason="the alpha confidential plan",
        start=False,
    )
    services.cancel(proposed, alpha, reason="alpha changed its mind")
    chip = server.chips.first()
    chip.health_note = "alpha looked at it"
    save_object(chip, alpha)
    transition(server.pk, "draining", alpha)  # the page's lifecycle list names who
    transition(server.pk, "in-service", alpha)
    mover = person_ctx(fleet, "provider_admin", "req-move")
    server = UltraServer.objects.get(pk=server.pk)
    server.rack = make_rack(fleet.sites["beta"], "BET1-R09")
    server.position, server.tenant = 1, fleet.beta
    save_object(server, mover)
    secrets = ("alpha-admin", "the alpha confidential plan", "alpha changed its mind")

    provider = fleet.client("provider_admin").get(history_url(server), {"limit": 1000}).json()
    assert {r["actor"] for r in provider["results"]} >= {"alpha-admin", "padmin"}
    assert {r["reason"] for r in provider["results"]} >= set(secrets[1:])

    answer = fleet.client("beta_viewer").get(history_url(server), {"limit": 1000})
    assert answer.status_code == 200, answer.content
    rows = answer.json()["results"]
    beta_ids = set(AuditEvent.objects.filter(tenant_id=fleet.beta.pk).values_list("pk", flat=True))
    assert rows and {r["id"] for r in rows} <= beta_ids  # the move itself, in beta's chain
    assert not any(secret in str(rows) for secret in (*secrets, "req-alpha-private"))
    assert fleet.client("alpha_viewer").get(history_url(server)).status_code == 404

    def touched(who: str) -> str:
        client = Client()
        client.force_login(fleet.people[who])
        page = client.get(f"/console/ultraservers/{server.pk}/")
        assert page.status_code == 200
        return page.content.decode().split('id="server-history"', 1)[1]

    assert all(secret in touched("provider_admin") for secret in secrets)
    assert not any(secret in touched("beta_viewer") for secret in secrets)
    client = Client()
    client.force_login(fleet.people["beta_viewer"])
    whole = client.get(f"/console/ultraservers/{server.pk}/").content.decode()
    assert "alpha-admin" not in whole  # nor in its lifecycle list


def test_the_history_query_uses_no_json_containment_and_stays_flat(fleet, in_service):
    """Workflow events are found by the workflows that targeted the server (an indexed
    subquery), not by JSON containment: the query compiles for SQLite (the embedded default,
    which refuses ``contains`` on JSON), PostgreSQL runs no ``@>``, a per-server action on
    another server of the same workflow is not listed, and more workflows cost no queries."""
    from django.db.utils import ConnectionHandler

    from factory.inventory.history import server_history
    from provisioning.attribution import record_workflow_action
    from tenants.access import SYSTEM

    quiet, busy, neighbour = in_service[3], in_service[4], in_service[5]
    sqlite = ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3"}})["default"]
    sql, _ = server_history(busy, SYSTEM).query.get_compiler(connection=sqlite).as_sql()
    assert "provisioning_workflowtarget" in sql
    for n in range(3):
        workflow, _ = services.create_workflow(
            "upgrade", [busy, neighbour], CTX, spec={"firmware_version": "2.0"}, start=False
        )
        record_workflow_action(workflow, "retry", CTX, reason=f"only {n}", servers=[neighbour.pk])
        services.cancel(workflow, CTX, reason=f"round {n}")
    client = fleet.client("alpha_viewer")
    client.get(history_url(quiet))  # the token's first use is recorded once
    counts = []
    for server in (quiet, busy):
        with CaptureQueriesContext(connection) as queries:
            answer = client.get(history_url(server), {"limit": 1000})
        assert answer.status_code == 200
        assert not any("@>" in q["sql"] for q in queries)
        counts.append((len(queries), answer.json()["results"]))
    (quiet_q, quiet_rows), (busy_q, busy_rows) = counts
    assert busy_q == quiet_q
    verbs = [r["verb"] for r in busy_rows if r["object_type"] == WORKFLOW]
    assert verbs == ["create", "cancel"] * 3  # not the neighbour's retries
    assert not any(r["object_type"] == WORKFLOW for r in quiet_rows)
    neighbours = client.get(history_url(neighbour), {"limit": 1000}).json()["results"]
    assert [r["verb"] for r in neighbours if r["object_type"] == WORKFLOW].count("retry") == 3


def test_the_history_reads_the_engines_own_names():
    """``factory.inventory.history`` may not import the engine, so it copies the strings the
    engine writes: they must stay the same."""
    from factory.inventory import history
    from provisioning import attribution

    assert (history.WORKFLOW_OBJECT, history.TARGETS_KEY) == (
        attribution.WORKFLOW_OBJECT,
        attribution.TARGETS_KEY,
    )
    assert Workflow._meta.label_lower == history.WORKFLOW_OBJECT
