"""Workflows and maintenance windows tell their site's tenant: one ``workflow.created`` per
workflow, one ``workflow.state_changed`` per change of state (``history.set_state``, the one
place a state is written), one ``maintenance_window.requested`` per window proposed or changed
and one ``maintenance_window.decided`` per decision, each in the change's own transaction."""

import datetime as dt

import pytest
from django.db import transaction

from provisioning import rollout, services
from provisioning.models import MaintenanceWindow
from tenants.errors import Conflict
from tenants.events.kinds import EventKind
from tenants.events.models import Event
from tests.support.fleet import CTX
from tests.support.harness import drive

pytestmark = pytest.mark.django_db

FAST = {"firmware_version": "2.0", "soak_seconds": 0, "poll_seconds": 1, "batch_size": 2}


def log(workflow) -> list[tuple[str, str | None, str | None]]:
    events = Event.objects.filter(subject_type="workflow", subject_id=str(workflow.pk))
    return [(e.kind, e.data.get("from"), e.data.get("to")) for e in events.order_by("id")]


def test_creation_and_every_state_change_is_one_event(fleet, in_service, agent, hw):
    workflow, _ = services.create_workflow("upgrade", in_service[:2], CTX, spec=FAST)
    services.pause(workflow, CTX, reason="paused by system")
    services.resume(workflow, CTX)
    workflow = drive(workflow, agent, hw)
    assert workflow.state == "succeeded", workflow.state_reason
    assert log(workflow) == [
        (EventKind.WORKFLOW_CREATED, None, None),
        (EventKind.WORKFLOW_STATE_CHANGED, "running", "paused"),
        (EventKind.WORKFLOW_STATE_CHANGED, "paused", "running"),
        (EventKind.WORKFLOW_STATE_CHANGED, "running", "succeeded"),
    ]
    created, paused, *_ = Event.objects.filter(subject_type="workflow").order_by("id")
    assert {e.tenant_id for e in Event.objects.all()} == {fleet.alpha.pk}
    assert created.data == {
        "workflow_kind": "upgrade",
        "state": "running",
        "site": fleet.sites["alpha"].code,
        "targets": 2,
        "reason": "",
        "created_by": "system",
    }
    assert paused.data == {
        "from": "running",
        "to": "paused",
        "workflow_kind": "upgrade",
        "reason": "paused by system",
    }
    assert paused.subject_name == str(workflow)


def test_a_proposed_workflow_started_then_cancelled(fleet, in_service):
    workflow, _ = services.create_workflow("upgrade", in_service[:1], CTX, spec=FAST, start=False)
    services.start(workflow, CTX)
    services.cancel(workflow, CTX, reason="not today")
    rollout.advance(workflow.pk)  # nothing in flight: cancelled at once
    assert log(workflow) == [
        (EventKind.WORKFLOW_CREATED, None, None),
        (EventKind.WORKFLOW_STATE_CHANGED, "proposed", "running"),
        (EventKind.WORKFLOW_STATE_CHANGED, "running", "cancelling"),
        (EventKind.WORKFLOW_STATE_CHANGED, "cancelling", "cancelled"),
    ]
    assert Event.objects.order_by("id").last().data["reason"] == "not today"


def test_a_refused_or_rolled_back_change_leaves_no_event(fleet, in_service):
    workflow, _ = services.create_workflow("upgrade", in_service[:1], CTX, spec=FAST)
    with pytest.raises(Conflict):
        services.resume(workflow, CTX)  # running, not paused
    with pytest.raises(RuntimeError), transaction.atomic():
        services.pause(workflow, CTX, reason="test")
        raise RuntimeError("the request failed after the pause")
    assert log(workflow) == [(EventKind.WORKFLOW_CREATED, None, None)]
    with pytest.raises(RuntimeError), transaction.atomic():
        services.create_workflow("upgrade", in_service[1:2], CTX, spec=FAST)
        raise RuntimeError("rolled back")
    assert Event.objects.count() == 1


def test_a_window_requested_changed_and_decided(fleet):
    admin = fleet.client("provider_admin")
    body = {
        "site": fleet.sites["beta"].pk,
        "name": "nightly",
        "weekdays": [0, 2],
        "start_time": "02:00",
        "duration_minutes": 120,
    }
    response = admin.post("/api/v1/maintenance-windows/", body, format="json")
    assert response.status_code == 201, response.content
    window = MaintenanceWindow.objects.get()
    url = f"/api/v1/maintenance-windows/{window.pk}/"
    assert fleet.client("beta_admin").post(f"{url}approve/").status_code == 200
    assert admin.patch(url, {"duration_minutes": 60}, format="json").status_code == 200
    log = list(Event.objects.order_by("id"))
    assert [(e.kind, e.data["status"], e.data.get("change")) for e in log] == [
        (EventKind.MAINTENANCE_WINDOW_REQUESTED, "proposed", "created"),
        (EventKind.MAINTENANCE_WINDOW_DECIDED, "approved", None),
        (EventKind.MAINTENANCE_WINDOW_REQUESTED, "proposed", "changed"),  # back for approval
    ]
    assert {e.tenant_id for e in log} == {fleet.beta.pk}
    assert log[0].data == {
        "site": fleet.sites["beta"].code,
        "name": "nightly",
        "weekdays": [0, 2],
        "start_time": "02:00:00",
        "duration_minutes": 120,
        "status": "proposed",
        "change": "created",
    }
    assert log[1].data["decided_by"] == "beta-admin"
    assert log[0].subject_name == f"{fleet.sites['beta'].code}: nightly"


def test_a_rolled_back_window_decision_leaves_no_event(fleet):
    window = services.propose_window(
        MaintenanceWindow(
            site=fleet.sites["alpha"],
            name="w",
            weekdays=[1],
            start_time=dt.time(1, 0),
            duration_minutes=60,
        ),
        CTX,
    )
    with pytest.raises(RuntimeError), transaction.atomic():
        services.decide_window(window, True, CTX)
        raise RuntimeError("rolled back")
    assert list(Event.objects.values_list("kind", flat=True)) == [
        EventKind.MAINTENANCE_WINDOW_REQUESTED
    ]
