"""Issue 17 item 2: workflows say what they wait for (``needs_action``), a cancel stops them at
every wait, steps and targets filter by state, pause and cancel say why, and a wait for a
person escalates after its time limit."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from provisioning import attention, services
from provisioning.models import MaintenanceWindow, Notification, Step, Workflow, WorkflowEvent
from provisioning.windows import describe_opening
from tenants.errors import Invalid
from tenants.events.models import Event
from tenants.sovereignty.models import SovereigntyRule
from tenants.sovereignty.services import activate_rule
from tests.support.fleet import CTX, make_person
from tests.support.harness import drive
from tests.support.workflows import put_in_service

pytestmark = pytest.mark.django_db
WORKFLOWS = "/api/v1/workflows/"


def _at_dispatch(fleet, agent, hw, spec=None, server=None):
    """A fault's maintain workflow, drained and waiting for a technician."""
    server = server or put_in_service(fleet.servers["alpha"])
    _, workflow = services.report_fault(server, "HBM ECC storm on chip 9", CTX)
    if spec:
        Workflow.objects.filter(pk=workflow.pk).update(spec={**workflow.spec, **spec})
        workflow.refresh_from_db()
    workflow = drive(workflow, agent, hw, rounds=4)
    assert Step.objects.get(workflow=workflow, name="dispatch").state == "waiting"
    return server, workflow


def _deny_outsiders(fleet):
    rule = SovereigntyRule.objects.create(
        tenant=fleet.alpha,
        name="DE staff only",
        kind="personnel",
        params={"nationalities": ["DE"], "min_clearance": "confidential", "in_country": True},
    )
    activate_rule(rule, CTX)
    return make_person("far-tech", "provider-technician", nationality="US", residency="US")


def test_a_denied_dispatch_says_why_in_needs_action(fleet, releases, agent, hw):
    server, workflow = _at_dispatch(fleet, agent, hw)
    need = attention.needs_action(workflow)
    assert need["kind"] == "waiting-technician" and need["detail"]["serial"] == server.serial
    outsider = _deny_outsiders(fleet)
    services.provide_input(
        workflow, "dispatch", None, {"technician": outsider.pk, "from_country": "US"}, CTX
    )
    workflow = drive(workflow, agent, hw, rounds=2)
    need = attention.needs_action(workflow)
    assert need["kind"] == "waiting-technician"
    assert "far-tech may not act here" in need["message"], need
    assert need["detail"]["denied"] == ["far-tech"] and not need["detail"]["overdue"]
    shown = fleet.client("provider_admin").get(f"{WORKFLOWS}{workflow.pk}/").json()
    assert shown["needs_action"]["kind"] == "waiting-technician"
    assert "far-tech may not act here" in shown["needs_action"]["message"]


def test_needs_action_filter_and_flat_query_count(fleet, releases, agent, hw, in_service):
    _, waiting = _at_dispatch(fleet, agent, hw, server=in_service[0])
    client = fleet.client("provider_admin")
    quiet, _ = services.create_workflow(
        "upgrade", in_service[1:2], CTX, spec={"firmware_version": "2.0"}, start=False
    )
    ids = [w["id"] for w in client.get(f"{WORKFLOWS}?needs_action=true").json()["results"]]
    assert waiting.pk in ids and quiet.pk not in ids
    ids = [w["id"] for w in client.get(f"{WORKFLOWS}?needs_action=false").json()["results"]]
    assert quiet.pk in ids and waiting.pk not in ids
    bad = client.get(f"{WORKFLOWS}?needs_action=maybe")
    assert bad.status_code == 400 and "needs_action" in bad.content.decode()

    def queries() -> int:
        with CaptureQueriesContext(connection) as seen:
            assert client.get(WORKFLOWS).status_code == 200
        return len(seen)

    before = queries()
    for server in in_service[2:5]:
        services.report_fault(server, "chip 4 down", CTX)
    for workflow in Workflow.objects.filter(kind="maintain"):
        drive(workflow, agent, hw, rounds=4)
    assert Workflow.objects.count() >= 5
    assert queries() == before  # needs_action read for the page at once


def test_cancel_at_the_dispatch_wait_stops_now_and_leaves_the_server_at_rest(
    fleet, releases, agent, hw
):
    server, workflow = _at_dispatch(fleet, agent, hw)
    client = fleet.client("provider_admin")
    url = f"{WORKFLOWS}{workflow.pk}/"
    refused = client.post(url + "cancel/", {"reason": "  "}, format="json")
    assert refused.status_code == 400 and "reason" in refused.content.decode()
    answer = client.post(url + "cancel/", {"reason": "the part is not coming"}, format="json")
    assert answer.status_code == 200, answer.content
    workflow = drive(workflow, agent, hw, rounds=2)
    assert workflow.state == "cancelled", workflow.state_reason
    server.refresh_from_db()
    assert (server.lifecycle_state, server.in_maintenance) == ("maintenance", True)
    target = workflow.targets.get()
    assert (target.state, target.active) == ("skipped", False)
    assert target.verified_state["lifecycle_state"] == "maintenance"
    assert not Step.objects.filter(workflow=workflow, state__in=["waiting", "ready"]).exists()
    assert WorkflowEvent.objects.filter(workflow=workflow, kind="target-cancelled-at-wait").exists()
    # the hold is released: a new workflow may take the server
    _, again = services.report_fault(server, "still broken", CTX)
    assert again.pk != workflow.pk


def test_cancel_at_the_window_wait_and_the_window_in_local_time_and_utc(fleet, releases, agent, hw):
    site = fleet.sites["alpha"]
    site.time_zone = "America/New_York"
    site.save(update_fields=["time_zone"])
    server = put_in_service(fleet.servers["alpha"])
    tomorrow = (timezone.now().astimezone(dt.UTC) + dt.timedelta(days=2)).weekday()
    MaintenanceWindow.objects.create(
        site=site,
        name="night",
        weekdays=[tomorrow],
        start_time=dt.time(2, 0),
        duration_minutes=60,
        status="approved",
    )
    workflow, _ = services.create_workflow(
        "maintain", [server], CTX, spec={"scheduled": True}, reason="planned HBM swap"
    )
    workflow = drive(workflow, agent, hw, rounds=2)
    need = attention.needs_action(workflow)
    assert need["kind"] == "waiting-window", (workflow.state_reason, need)
    opens_utc = dt.datetime.fromisoformat(need["detail"]["opens_utc"])
    local = opens_utc.astimezone(dt.timezone(dt.timedelta(hours=-5)))  # EST in winter
    assert local.hour in (2, 3) and opens_utc.hour in (6, 7), need  # 02:00 local is 07:00Z
    assert "America/New_York" in need["message"] and "UTC" in need["message"]
    assert "02:00 E" in workflow.state_reason and "UTC" in workflow.state_reason
    services.cancel(workflow, CTX, reason="not this week")
    workflow = drive(workflow, agent, hw, rounds=2)
    assert workflow.state == "cancelled"
    server.refresh_from_db()
    assert server.lifecycle_state == "in-service"  # never touched
    assert not workflow.targets.filter(active=True).exists()


def test_describe_opening_is_right_in_both_zones():
    from zoneinfo import ZoneInfo

    opening = dt.datetime(2026, 12, 3, 2, 0, tzinfo=ZoneInfo("America/New_York"))
    assert describe_opening(opening, "America/New_York") == (
        "2026-12-03 02:00 EST (America/New_York), 07:00 UTC"
    )
    summer = dt.datetime(2026, 7, 3, 22, 30, tzinfo=ZoneInfo("America/New_York"))
    assert describe_opening(summer, "America/New_York") == (
        "2026-07-03 22:30 EDT (America/New_York), 2026-07-04 02:30 UTC"
    )


def test_steps_and_targets_filter_by_state(fleet, releases, agent, hw):
    _, workflow = _at_dispatch(fleet, agent, hw)
    client = fleet.client("provider_admin")
    url = f"{WORKFLOWS}{workflow.pk}/"
    waiting = client.get(url + "steps/?state=waiting")
    assert waiting.status_code == 200
    assert [s["name"] for s in waiting.json()["results"]] == ["dispatch"]
    assert client.get(url + "steps/?state=failed").json()["results"] == []
    bad = client.get(url + "steps/?state=nonsense")
    assert bad.status_code == 400 and "state" in bad.content.decode()
    running = client.get(url + "targets/?state=running").json()["results"]
    assert len(running) == 1
    assert client.get(url + "targets/?state=failed").json()["results"] == []
    bad = client.get(url + "targets/?state=nonsense")
    assert bad.status_code == 400 and "state" in bad.content.decode()


def test_pause_and_cancel_need_a_reason(fleet, in_service):
    workflow, _ = services.create_workflow(
        "upgrade", in_service[:1], CTX, spec={"firmware_version": "2.0"}
    )
    client = fleet.client("provider_admin")
    url = f"{WORKFLOWS}{workflow.pk}/"
    for verb in ("pause", "cancel"):
        for body in ({}, {"reason": ""}):
            answer = client.post(url + f"{verb}/", body, format="json")
            assert answer.status_code == 400, (verb, body)
            assert "reason" in answer.content.decode()
    with pytest.raises(Invalid) as refused:
        services.pause(workflow, CTX, reason=" ")
    assert refused.value.field == "reason"
    workflow.refresh_from_db()
    assert workflow.state == "running"
    paused = client.post(url + "pause/", {"reason": "lunch"}, format="json").json()
    assert paused["state"] == "paused" and paused["state_reason"] == "lunch"


def test_a_wait_for_a_person_escalates_after_its_limit_and_keeps_waiting(
    fleet, releases, agent, hw
):
    _, workflow = _at_dispatch(fleet, agent, hw, spec={"person_timeout_seconds": 60})
    dispatch = Step.objects.get(workflow=workflow, name="dispatch")
    assert dispatch.next_check_at <= dispatch.started_at + dt.timedelta(seconds=61)
    assert not attention.needs_action(workflow)["detail"]["overdue"]
    Step.objects.filter(pk=dispatch.pk).update(
        started_at=timezone.now() - dt.timedelta(minutes=5), next_check_at=timezone.now()
    )
    workflow = drive(workflow, agent, hw, rounds=2)
    dispatch.refresh_from_db()
    assert dispatch.state == "waiting" and dispatch.output["escalated_at"]
    assert WorkflowEvent.objects.filter(workflow=workflow, kind="escalated").count() == 1
    assert Notification.objects.filter(workflow=workflow, kind="escalated").count() == 1
    [told] = Event.objects.filter(kind="workflow.escalated", subject_id=str(workflow.pk))
    assert told.tenant_id == workflow.site.tenant_id
    assert told.data["step"] == "dispatch" and told.data["limit_seconds"] == 60
    assert told.data["waited_seconds"] >= 300 and told.data["server"]
    need = attention.needs_action(workflow)
    assert need["detail"]["overdue"] and need["message"].startswith("overdue:")
    Step.objects.filter(pk=dispatch.pk).update(next_check_at=timezone.now())
    drive(workflow, agent, hw, rounds=2)
    assert WorkflowEvent.objects.filter(workflow=workflow, kind="escalated").count() == 1
    assert Event.objects.filter(kind="workflow.escalated").count() == 1  # told once


def test_the_spec_declares_the_person_timeout_with_a_default(fleet, releases):
    server = put_in_service(fleet.servers["alpha"])
    _, workflow = services.report_fault(server, "chip 4 down", CTX)
    assert workflow.spec.get("person_timeout_seconds", 4 * 3600) == 4 * 3600
    with pytest.raises(Invalid):
        services.create_workflow(
            "maintain", [server], CTX, spec={"person_timeout_seconds": 0}, reason="x"
        )


def test_the_console_page_says_why_offers_only_allowed_technicians_and_asks_why_to_cancel(
    client, fleet, releases, agent, hw
):
    server, workflow = _at_dispatch(fleet, agent, hw)
    outsider = _deny_outsiders(fleet)
    client.force_login(fleet.people["provider_admin"])
    page = client.get(f"/console/workflows/{workflow.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="needs-action"' in html and "waiting for a technician" in html
    offered = html.split('<select id="technician"', 1)[1].split("</select>", 1)[0]
    tech = fleet.people["technician"]
    assert f">{tech.username}<" in offered and ">far-tech<" not in offered
    assert "<strong>far-tech</strong>:" in html  # not offered, and why
    assert f'id="target-{workflow.targets.get().pk}"' in html  # the server's timeline
    header = client.get(f"/console/workflows/{workflow.pk}/", HTTP_HX_REQUEST="true")
    assert "<details" not in header.content.decode()  # the live part holds no open section

    # a dispatch of someone not offered is refused; of someone offered, moves it on
    url = f"/console/workflows/{workflow.pk}/dispatch/"
    client.post(url, {"technician": outsider.pk})
    assert Step.objects.get(workflow=workflow, name="dispatch").input == {}
    client.post(url, {"technician": tech.pk, "ultraserver": server.pk})
    workflow = drive(workflow, agent, hw, rounds=2)
    assert Step.objects.get(workflow=workflow, name="dispatch").state == "succeeded"

    # cancel asks why: without one, the form again (400); with one, done
    steer = f"/console/workflows/{workflow.pk}/steer/cancel/"
    assert 'name="reason"' in client.get(steer).content.decode()
    assert client.post(steer, {"reason": " "}).status_code == 400
    workflow.refresh_from_db()
    assert workflow.state == "running"
    # one path steers: the old one-click URL is gone
    assert client.post(f"/console/workflows/{workflow.pk}/cancel/").status_code == 404
    assert client.post(steer, {"reason": "wrong server"}).status_code == 302
    workflow.refresh_from_db()
    assert workflow.state in ("cancelling", "cancelled")
    listed = client.get("/console/workflows/").content.decode()
    assert f'href="/console/workflows/{workflow.pk}/"' in listed


def test_a_cancel_while_the_waiting_step_runs_still_stops_it(fleet, releases, agent, hw):
    from django.db import transaction

    from provisioning import runner

    server, workflow = _at_dispatch(fleet, agent, hw)
    dispatch = Step.objects.get(workflow=workflow, name="dispatch")
    Step.objects.filter(pk=dispatch.pk).update(next_check_at=None)
    assert runner.claim_steps([dispatch.pk], "w1") == [dispatch.pk]  # a worker has it now
    services.cancel(workflow, CTX, reason="wrong server")  # sees no waiting step
    with transaction.atomic():
        runner._StepBatch([dispatch.pk], "w1").run()
    workflow = drive(workflow, agent, hw, rounds=1)
    assert workflow.state == "cancelled", workflow.state_reason
    server.refresh_from_db()
    assert (server.lifecycle_state, server.in_maintenance) == ("maintenance", True)
