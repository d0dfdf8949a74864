"""What became of a fault is on the fault: a refused drain is ``waiting-capacity-floor`` (the
report kept, never a 409 that loses it) until the health sweep moves it on; people
acknowledge, silence and resolve faults through the API, audited with their note."""

import datetime as dt

import pytest
from django.utils import timezone

from factory import wire
from factory.telemetry import faults
from factory.telemetry.models import Fault
from provisioning import jobs, services
from provisioning.models import CapacityFloor, Workflow, WorkflowTarget
from tenants.errors import Conflict
from tenants.models import AuditEvent
from tests.support.api import assert_error_body
from tests.support.fleet import CTX
from tests.support.telemetry import agent_client, post, server_report
from tests.support.workflows import put_in_service

FAULTS = "/api/v1/faults/"


@pytest.fixture
def server(fleet):
    return put_in_service(fleet.servers["alpha"])


@pytest.fixture
def floor(fleet, server):
    """The tenant keeps its one server in service: no drain may start."""
    return CapacityFloor.objects.create(site=fleet.sites["alpha"], min_in_service=1)


def report(fleet, server, who="alpha_operator", reason="smoke from tray 2"):
    return fleet.client(who).post(
        FAULTS, {"ultraserver": server.pk, "reason": reason}, format="json"
    )


def test_a_report_at_the_capacity_floor_is_kept_waiting_and_the_sweep_moves_it_on(
    fleet, server, floor
):
    response = report(fleet, server)
    assert response.status_code == 201, response.content
    body = response.json()
    fault = Fault.objects.get(pk=body["fault"])  # kept, not rolled back with the refusal
    assert body["workflow"] is None and body["in_maintenance"]
    assert (body["severity"], body["action"]) == ("critical", "waiting-capacity-floor")
    assert "capacity floor of 1" in body["action_detail"]
    assert (fault.action, fault.action_detail) == (body["action"], body["action_detail"])
    assert not Workflow.objects.exists()

    refused = jobs.health_sweep()
    assert refused["opened"] == [] and "capacity floor" in refused["refused"][0]
    fault.refresh_from_db()
    assert fault.action == "waiting-capacity-floor"

    floor.min_in_service = 0
    floor.save()
    opened = jobs.health_sweep()
    workflow = Workflow.objects.get(pk__in=opened["opened"])
    assert workflow.kind == "maintain"
    fault.refresh_from_db()
    assert (fault.action, fault.action_detail) == (
        "maintenance",
        f"maintain workflow #{workflow.pk}",
    )
    listed = fleet.client("alpha_viewer").get(FAULTS, {"action": "maintenance"}).json()
    assert [f["id"] for f in listed["results"]] == [fault.pk]


def test_a_health_rule_refused_at_the_floor_waits_too(
    fleet, server, floor, django_capture_on_commit_callbacks
):
    client, _ = agent_client(fleet.sites["alpha"])
    health = [int(wire.HealthCode.OK)] * 144
    health[3] = int(wire.HealthCode.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        post(client, [server_report(server.serial, 1, health=health)])
    fault = Fault.objects.get()
    assert fault.action == "waiting-capacity-floor"
    assert "capacity floor" in fault.action_detail
    waiting = fleet.client("alpha_viewer").get(FAULTS, {"action": "waiting-capacity-floor"})
    assert [f["id"] for f in waiting.json()["results"]] == [fault.pk]
    floor.delete()
    jobs.health_sweep()
    fault.refresh_from_db()
    assert fault.action == "maintenance"
    assert WorkflowTarget.objects.get(ultraserver=server, active=True).workflow.kind == "maintain"


def test_a_refusal_other_than_the_floor_leaves_the_fault_for_the_sweep(fleet, server, floor):
    """Any refusal of the maintain workflow (here the state check a race would give) leaves
    the fault pending maintenance with the refusal's words, never merely recorded: the
    server is flagged, and the health sweep opens its workflow once it may."""
    fault = Fault.objects.get(pk=report(fleet, server).json()["fault"])  # flagged, waiting
    refusal = Conflict(
        f"a maintain cannot start from these states: {server.serial} (installing)",
        code="invalid_state",
        field="targets",
    )
    faults.set_action(Fault.objects.filter(pk=fault.pk), *services.refused_action(refusal))
    fault.refresh_from_db()
    assert fault.action == "maintenance"
    assert "no maintain workflow yet" in fault.action_detail
    assert refusal.message in fault.action_detail
    floor.delete()
    opened = jobs.health_sweep()
    workflow = Workflow.objects.get(pk__in=opened["opened"])
    fault.refresh_from_db()
    assert (fault.action, fault.action_detail) == (
        "maintenance",
        f"maintain workflow #{workflow.pk}",
    )


def test_a_report_on_a_server_another_workflow_holds_says_held(fleet, server, releases):
    upgrade, _ = services.create_workflow(
        "upgrade", [server], CTX, spec={"firmware_version": "2.0"}
    )
    response = report(fleet, server)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["workflow"] is None and body["action"] == "held"
    assert f"upgrade workflow #{upgrade.pk} holds the server" in body["action_detail"]
    again = report(fleet, server, reason="still smoking")
    assert again.json()["fault"] is None and again.json()["action"] == "held"


def test_a_report_when_the_policy_only_records_does_not_drain(fleet, server, settings):
    settings.FACTORY_FAULT_POLICY = {"reported": {"severity": "warning", "action": "record"}}
    body = report(fleet, server).json()
    assert (body["severity"], body["action"], body["workflow"]) == ("warning", "recorded", None)
    assert not body["in_maintenance"]
    assert not WorkflowTarget.objects.exists()


@pytest.fixture
def fault(fleet, server):
    body = report(fleet, server).json()
    return Fault.objects.get(pk=body["fault"])


def _audit(fault):
    return AuditEvent.objects.filter(object_type="telemetry.fault", object_id=str(fault.pk))


@pytest.mark.parametrize("who", ["alpha_admin", "alpha_operator", "technician", "provider_admin"])
def test_people_acknowledge_silence_and_resolve_with_audited_notes(fleet, fault, who):
    person = fleet.client(who)
    url = f"{FAULTS}{fault.pk}/"
    acked = person.post(url + "acknowledge/", {"note": "on my way"}, format="json")
    assert acked.status_code == 200, acked.content
    assert acked.json()["acknowledged_by"] == fleet.people[who].username
    assert acked.json()["acknowledge_note"] == "on my way"
    until = timezone.now() + dt.timedelta(hours=2)
    silenced = person.post(
        url + "silence/",
        {"until": until.isoformat(), "note": "known, parts ordered"},
        format="json",
    )
    assert silenced.status_code == 200, silenced.content
    assert silenced.json()["silenced"] is True and silenced.json()["silence_note"]
    resolved = person.post(url + "resolve/", {"note": "tray reseated"}, format="json")
    assert resolved.status_code == 200, resolved.content
    shown = resolved.json()
    assert shown["cleared_at"] and shown["cleared_by"] == fleet.people[who].username
    assert "tray reseated" in shown["cleared_reason"]
    notes = [(e.after or {}) for e in _audit(fault).order_by("occurred_at", "id")]
    assert [n.get("acknowledge_note") for n in notes][-3:] == ["on my way"] * 3
    assert notes[-2]["silence_note"] == "known, parts ordered"
    assert "tray reseated" in notes[-1]["cleared_reason"] and notes[-1]["cleared_by"]
    again = assert_error_body(person.post(url + "resolve/", {"note": "x"}, format="json"), 409)
    assert (again["code"], again["errors"][0]["field"]) == ("fault_resolved", "cleared_at")


def test_who_may_attend_to_a_fault_and_bodies_that_name_the_field(fleet, fault):
    url = f"{FAULTS}{fault.pk}/"
    assert_error_body(fleet.client("beta_admin").post(url + "acknowledge/", {"note": "x"}), 404)
    assert_error_body(fleet.client("alpha_viewer").post(url + "acknowledge/", {"note": "x"}), 403)
    admin = fleet.client("alpha_admin")
    cases = [
        ("acknowledge/", {}, "note"),
        ("acknowledge/", {"note": "x" * 501}, "note"),
        ("silence/", {"note": "x"}, "until"),
        ("silence/", {"note": "x", "until": "tomorrow"}, "until"),
        ("silence/", {"until": (timezone.now() + dt.timedelta(hours=1)).isoformat()}, "note"),
        ("silence/", {"note": "x", "until": "2020-01-01T00:00Z"}, "until"),
        (
            "silence/",
            {"note": "x", "until": (timezone.now() + dt.timedelta(days=8)).isoformat()},
            "until",
        ),
        ("resolve/", {"note": "  "}, "note"),
    ]
    for path, body, field in cases:
        refused = assert_error_body(admin.post(url + path, body, format="json"), 400)
        assert [e["field"] for e in refused["errors"]] == [field], (path, body, refused)
    fault.refresh_from_db()
    assert fault.acknowledged_at is None and fault.silenced_until is None
    assert fault.cleared_at is None


def test_faults_filter_by_severity_action_acknowledged_and_silenced(fleet, fault, settings):
    viewer, admin = fleet.client("alpha_viewer"), fleet.client("alpha_admin")

    def ids(**params):
        response = viewer.get(FAULTS, params)
        assert response.status_code == 200, response.content
        return [f["id"] for f in response.json()["results"]]

    assert ids(severity="critical") == [fault.pk] and ids(severity="warning") == []
    assert ids(action="maintenance") == [fault.pk] and ids(action="recorded") == []
    assert ids(acknowledged="false") == [fault.pk] and ids(acknowledged="true") == []
    assert ids(silenced="false") == [fault.pk] and ids(silenced="true") == []
    admin.post(f"{FAULTS}{fault.pk}/acknowledge/", {"note": "seen"}, format="json")
    until = (timezone.now() + dt.timedelta(hours=1)).isoformat()
    admin.post(f"{FAULTS}{fault.pk}/silence/", {"note": "later", "until": until}, format="json")
    assert ids(acknowledged="true") == [fault.pk] and ids(silenced="true") == [fault.pk]
    Fault.objects.filter(pk=fault.pk).update(silenced_until=timezone.now() - dt.timedelta(1))
    assert ids(silenced="true") == [] and ids(silenced="false") == [fault.pk]  # it ran out
    for bad in ({"severity": "major"}, {"silenced": "maybe"}, {"action": "drained"}):
        refused = assert_error_body(viewer.get(FAULTS, bad), 400)
        assert refused["errors"][0]["field"] == next(iter(bad))


def test_the_schema_documents_the_fault_fields_and_actions(fleet):
    schema = fleet.client("alpha_viewer").get("/api/schema/", {"format": "json"}).json()
    fault = schema["components"]["schemas"]["Fault"]["properties"]
    for name in ("severity", "action", "action_detail", "silenced", "cleared_by"):
        assert name in fault, name
    for action in ("acknowledge", "silence", "resolve"):
        post = schema["paths"][f"/api/v1/faults/{{id}}/{action}/"]["post"]
        assert "requestBody" in post and "200" in post["responses"]
    result = schema["components"]["schemas"]["FaultResult"]["properties"]
    assert {"severity", "action", "action_detail"} <= set(result)
    params = {p["name"] for p in schema["paths"]["/api/v1/faults/"]["get"]["parameters"]}
    assert {"severity", "action", "acknowledged", "silenced"} <= params
