"""What a workflow waits for, as the API and the console show it, and the audit of steering one
server: ``needs_action`` "waiting-tenant" (an undecided lockbox request, an unapproved
window) in the workflow's API answer and list; the console's workflow page naming why the
lockbox denied the last technician and which servers the failure budget paused on; the alerts
page showing a fault whose drain the capacity floor refused; and the audit events of skip and
force-release naming the person, the workflow and the reason given."""

from __future__ import annotations

import datetime as dt
import html

import pytest
from django.test import Client

from factory.telemetry.models import Fault
from provisioning import attention, services
from provisioning.models import CapacityFloor, MaintenanceWindow, Step, WorkflowEvent
from tenants.models import AuditEvent
from tenants.sovereignty import services as sovereignty
from tenants.sovereignty.models import SovereigntyRule
from tests.provisioning.test_operator_actions import stopped_batch, target_of
from tests.support.fleet import CTX
from tests.support.harness import drive
from tests.support.workflows import put_in_service
from tests.tenants.sovereignty.test_lockbox import file_request

pytestmark = pytest.mark.django_db
WORKFLOWS = "/api/v1/workflows/"


def console(fleet, who: str) -> Client:
    client = Client()
    client.force_login(fleet.people[who])
    return client


def lockbox(fleet) -> None:
    """Alpha's rule: nobody acts on its site without an access request it approved."""
    rule = SovereigntyRule.objects.create(
        tenant=fleet.alpha, name="lockbox", kind="customer_approval", params={}
    )
    sovereignty.activate_rule(rule, CTX)


def denied_dispatch(fleet, agent, hw):
    """A fault's maintain workflow at its dispatch, the fleet's technician dispatched and
    refused by alpha's lockbox (no approved access request covers them)."""
    lockbox(fleet)
    server = put_in_service(fleet.servers["alpha"])
    _, workflow = services.report_fault(server, "HBM ECC storm on chip 9", CTX)
    workflow = drive(workflow, agent, hw, rounds=4)
    tech = fleet.people["technician"]
    services.provide_input(
        workflow, "dispatch", None, {"technician": tech.pk, "from_country": "DE"}, CTX
    )
    workflow = drive(workflow, agent, hw, rounds=2)
    dispatch = Step.objects.get(workflow=workflow, name="dispatch")
    assert dispatch.state == "waiting" and dispatch.output["denied"] == [tech.username]
    return server, workflow, dispatch


def listed(client, **params) -> dict[int, dict]:
    answer = client.get(WORKFLOWS, params)
    assert answer.status_code == 200, answer.content
    return {w["id"]: w for w in answer.json()["results"]}


# --- 1. needs_action: waiting for the tenant ---------------------------------------------------


def test_an_undecided_lockbox_request_is_waiting_for_the_tenant_in_detail_and_list(
    fleet, releases, agent, hw
):
    server, workflow, dispatch = denied_dispatch(fleet, agent, hw)
    denial = dispatch.output["last_denial"]
    assert denial.startswith("tech may not act here (")
    assert "needs an access request approved by a tenant admin" in denial  # the lockbox's
    admin = fleet.client("provider_admin")
    alone = admin.get(f"{WORKFLOWS}{workflow.pk}/").json()["needs_action"]
    assert alone["kind"] == "waiting-technician"  # nothing asked of the tenant yet
    assert "access_requests" not in alone["detail"]

    access = file_request(fleet)  # pending: alpha's policy wants one approval
    assert access["status"] == "pending"
    expected_message = (
        f"{server.serial}: waiting for a technician to be dispatched; the last dispatch was "
        f"denied: {denial}; the tenant has not decided access request #{access['id']}"
    )
    for client in (admin, fleet.client("alpha_viewer")):
        need = client.get(f"{WORKFLOWS}{workflow.pk}/").json()["needs_action"]
        assert need["kind"] == "waiting-tenant", need
        assert need["message"] == expected_message
        assert need["detail"] == {
            "step": "dispatch",
            "step_id": dispatch.pk,
            "serial": server.serial,
            "servers_waiting": 1,
            "overdue": False,
            "escalated_at": None,
            "limit_seconds": 4 * 3600,
            "access_requests": [access["id"]],
            "denied": ["tech"],
            "last_denial": denial,
        }
        assert dt.datetime.fromisoformat(need["since"]) == dispatch.started_at
        # the list reads it for the page at once, the same answer
        assert listed(client)[workflow.pk]["needs_action"] == need
        assert workflow.pk in listed(client, needs_action="true")
        assert workflow.pk not in listed(client, needs_action="false")
    assert workflow.pk not in listed(fleet.client("beta_admin"))  # not theirs to see

    # the tenant decides: approved, nothing is asked of it any more
    fleet.client("alpha_admin").post(f"/api/v1/sovereignty/access-requests/{access['id']}/approve/")
    need = admin.get(f"{WORKFLOWS}{workflow.pk}/").json()["needs_action"]
    assert need["kind"] == "waiting-technician" and "access_requests" not in need["detail"]


def test_a_window_the_tenant_has_not_approved_is_waiting_for_the_tenant(fleet, releases, agent, hw):
    site = fleet.sites["alpha"]
    server = put_in_service(fleet.servers["alpha"])
    MaintenanceWindow.objects.create(
        site=site,
        name="sunday night",
        weekdays=[6],
        start_time=dt.time(1, 0),
        duration_minutes=120,
        status="proposed",
    )
    workflow, _ = services.create_workflow(
        "maintain", [server], CTX, spec={"scheduled": True}, reason="planned HBM swap"
    )
    workflow = drive(workflow, agent, hw, rounds=2)
    assert workflow.state_reason == attention.WINDOW_NONE
    expected = {
        "kind": "waiting-tenant",
        "message": f"waiting: {site.code} has no tenant-approved maintenance window; "
        "the tenant has not approved sunday night",
        "detail": {"time_zone": "Europe/Berlin", "proposed_windows": ["sunday night"]},
    }
    admin = fleet.client("provider_admin")
    for need in (
        admin.get(f"{WORKFLOWS}{workflow.pk}/").json()["needs_action"],
        listed(admin)[workflow.pk]["needs_action"],
    ):
        assert {k: need[k] for k in expected} == expected, need
        assert need["since"]
    assert workflow.pk in listed(admin, needs_action="true")

    # approved, it is a plain wait for the window's next opening, not for the tenant
    MaintenanceWindow.objects.filter(site=site).update(status="approved")
    need = admin.get(f"{WORKFLOWS}{workflow.pk}/").json()["needs_action"]
    assert need["kind"] == "waiting-window"
    assert "proposed_windows" not in need["detail"] and need["detail"]["opens_utc"]


# --- 2. The console -------------------------------------------------------------------------


def test_the_workflow_page_says_why_the_lockbox_denied_the_last_technician(
    fleet, releases, agent, hw
):
    server, workflow, dispatch = denied_dispatch(fleet, agent, hw)
    denial = dispatch.output["last_denial"]
    page = console(fleet, "provider_admin").get(f"/console/workflows/{workflow.pk}/")
    assert page.status_code == 200
    text = page.content.decode()
    banner = text.split('id="needs-action"', 1)[1].split("</div>", 1)[0]
    assert "Needs action (waiting-technician):" in banner
    assert f"{server.serial}: waiting for a technician to be dispatched" in banner
    assert f"the last dispatch was denied: {html.escape(denial)}" in banner
    assert "tech may not act here" in banner
    assert "lockbox: Provider access to a site needs an access request approved by a" in banner
    # the tenant sees the same reason on its own page
    tenant_page = console(fleet, "alpha_viewer").get(f"/console/workflows/{workflow.pk}/")
    assert html.escape(denial) in tenant_page.content.decode()
    assert console(fleet, "beta_admin").get(f"/console/workflows/{workflow.pk}/").status_code == (
        404
    )


def test_the_workflow_page_of_a_budget_pause_names_the_failed_servers(fleet, in_service, agent, hw):
    servers = in_service[:3]
    workflow = stopped_batch(servers, agent, hw)
    assert workflow.state == "paused"
    failed = servers[0].serial
    client = console(fleet, "provider_admin")
    text = client.get(f"/console/workflows/{workflow.pk}/").content.decode()
    banner = text.split('id="needs-action"', 1)[1].split("</div>", 1)[0]
    assert 'class="alert needs-action paused-budget"' in text
    assert "Needs action (paused-budget):" in banner
    assert (
        f"paused by its failure budget: 1 failed ({failed}); look at them, then resume with a "
        "new budget or cancel"
    ) in banner
    for mate in servers[1:]:
        assert mate.serial not in banner  # held, not failed
    assert f"failure budget reached: 1 of 3 failed ({failed};" in text  # the state's reason
    need = fleet.client("provider_admin").get(f"{WORKFLOWS}{workflow.pk}/").json()["needs_action"]
    assert need["kind"] == "paused-budget" and need["detail"] == {"failed_serials": [failed]}
    # a person's pause after a resume is not shown as the budget's
    services.resume(workflow, CTX)
    services.pause(workflow, CTX, reason="vendor asked us to wait")
    text = client.get(f"/console/workflows/{workflow.pk}/").content.decode()
    banner = text.split('id="needs-action"', 1)[1].split("</div>", 1)[0]
    assert "Needs action (paused):" in banner and "vendor asked us to wait" in banner
    assert "failure budget" not in banner


def test_the_alerts_page_shows_a_drain_refused_at_the_capacity_floor_as_waiting(fleet):
    from provisioning import jobs

    server = put_in_service(fleet.servers["alpha"])
    floor = CapacityFloor.objects.create(site=fleet.sites["alpha"], min_in_service=1)
    answer = fleet.client("alpha_operator").post(
        "/api/v1/faults/", {"ultraserver": server.pk, "reason": "smoke from tray 2"}, format="json"
    )
    assert answer.status_code == 201, answer.content
    fault = Fault.objects.get(pk=answer.json()["fault"])
    assert fault.action == "waiting-capacity-floor" and "capacity floor" in fault.action_detail

    def row(who: str) -> str:
        text = console(fleet, who).get("/console/alerts/").content.decode()
        assert f'id="fault-{fault.pk}"' in text, who
        return text.split(f'id="fault-{fault.pk}"', 1)[1].split("</tr>", 1)[0]

    for who in ("provider_admin", "alpha_admin"):
        cell = row(who)
        assert f"<td>Waiting: capacity floor — {html.escape(fault.action_detail)}</td>" in cell
        assert server.serial in cell
    assert f'id="fault-{fault.pk}"' not in (
        console(fleet, "beta_admin").get("/console/alerts/").content.decode()
    )

    floor.delete()  # the sweep may open its maintain workflow now
    opened = jobs.health_sweep()["opened"]
    assert len(opened) == 1
    cell = row("provider_admin")
    assert "Waiting: capacity floor" not in cell
    assert f"Maintenance opened — maintain workflow #{opened[0]}" in cell


# --- 3. Audit: skip and force-release -------------------------------------------------------


def _workflow_audit(workflow, verb: str) -> AuditEvent:
    return AuditEvent.objects.get(
        object_type="provisioning.workflow", object_id=str(workflow.pk), after__verb=verb
    )


def test_skip_through_the_api_is_audited_naming_the_person_the_workflow_and_why(
    fleet, in_service, agent, hw
):
    servers = in_service[:3]
    workflow = stopped_batch(servers, agent, hw)
    held = target_of(workflow, servers[1])
    admin = fleet.people["provider_admin"]
    url = f"{WORKFLOWS}{workflow.pk}/targets/{held.pk}/skip/"
    assert not AuditEvent.objects.filter(after__verb="skip").exists()
    answer = fleet.client("provider_admin").post(url, {"reason": "leave it for next week"})
    assert answer.status_code == 200, answer.content
    audit = _workflow_audit(workflow, "skip")
    assert (audit.actor_id, audit.actor_username, audit.source) == (admin.pk, "padmin", "api")
    assert (audit.action, audit.reason) == ("update", "leave it for next week")
    assert audit.object_repr == str(workflow)
    assert audit.tenant_id == fleet.alpha.pk  # in the tenant's own log
    assert audit.before == {"state": "paused", "ultraservers": [servers[1].pk]}
    assert audit.after == {"state": "paused", "verb": "skip", "ultraservers": [servers[1].pk]}
    told = WorkflowEvent.objects.get(workflow=workflow, kind="skip")
    assert told.actor == "padmin" and told.target_id == held.pk
    assert told.message.startswith(f"{servers[1].serial}: skipped by padmin")
    assert told.message.endswith(": leave it for next week")
    # the server's own history lists it, with the person and why
    history = fleet.client("alpha_viewer").get(
        f"/api/v1/ultraservers/{servers[1].pk}/history/", {"limit": 1000}
    )
    assert history.status_code == 200, history.content
    rows = [r for r in history.json()["results"] if r.get("verb") == "skip"]
    assert len(rows) == 1 and rows[0]["reason"] == "leave it for next week"
    # a refused skip writes nothing
    again = fleet.client("provider_admin").post(url, {"reason": "   "})
    assert again.status_code == 400
    assert AuditEvent.objects.filter(after__verb="skip").count() == 1


def test_force_release_through_the_api_is_audited_with_the_reason_and_the_person(
    fleet, in_service, agent, hw
):
    servers = in_service[:3]
    workflow = stopped_batch(servers, agent, hw)
    stuck = target_of(workflow, servers[2])
    admin = fleet.people["provider_admin"]
    why = "BMC wedged; the technician cannot reach it"
    answer = fleet.client("provider_admin").post(
        f"{WORKFLOWS}{workflow.pk}/targets/{stuck.pk}/force-release/", {"reason": why}
    )
    assert answer.status_code == 200, answer.content
    audit = _workflow_audit(workflow, "force-release")
    assert (audit.actor_id, audit.actor_username, audit.source) == (admin.pk, "padmin", "api")
    assert audit.reason == why
    assert audit.after["ultraservers"] == [servers[2].pk] and audit.tenant_id == fleet.alpha.pk
    # the server's flag, audited on the server, carries the person and the reason too
    flagged = AuditEvent.objects.get(
        object_type="inventory.ultraserver",
        object_id=str(servers[2].pk),
        after__in_maintenance=True,
        before__in_maintenance=False,
    )
    assert flagged.actor_username == "padmin"
    assert flagged.after["fault_reason"] == (
        f"force-released from workflow #{workflow.pk} by padmin: {why}"
    )
    told = WorkflowEvent.objects.get(workflow=workflow, kind="force-release")
    assert told.actor == "padmin" and told.message.endswith(f": {why}")
