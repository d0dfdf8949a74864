"""The lockbox tells the tenant: an access request created and decided is one event each of the
site's tenant, written in the change's transaction."""

import datetime as dt

import pytest
from django.db import transaction
from django.utils import timezone

from tenants.events.kinds import EventKind, timestamp
from tenants.events.models import Event
from tenants.sovereignty import services
from tenants.sovereignty.models import AccessRequest
from tests.support.fleet import CTX

pytestmark = pytest.mark.django_db


def access_body(fleet) -> dict:
    start = timezone.now() + dt.timedelta(hours=1)
    return {
        "site": fleet.sites["alpha"].pk,
        "person": fleet.people["technician"].pk,
        "reason": "replace a pump",
        "starts_at": start.isoformat(),
        "ends_at": (start + dt.timedelta(hours=2)).isoformat(),
    }


def test_an_access_request_created_and_decided_is_one_event_each(fleet):
    response = fleet.client("provider_admin").post(
        "/api/v1/sovereignty/access-requests/", access_body(fleet), format="json"
    )
    assert response.status_code == 201, response.content
    access = AccessRequest.objects.get()
    approve = f"/api/v1/sovereignty/access-requests/{access.pk}/approve/"
    assert fleet.client("alpha_admin").post(approve).status_code == 200
    assert fleet.client("alpha_admin").post(approve).status_code == 409  # decided: no event
    # The lockbox (issue 14): the decision completing the policy's approvals is also announced
    # as ``access_request.approved`` (with the approvers).
    created, decided, approved = Event.objects.order_by("id")
    assert (created.kind, decided.kind, approved.kind) == (
        EventKind.ACCESS_REQUEST_CREATED,
        EventKind.ACCESS_REQUEST_DECIDED,
        EventKind.ACCESS_REQUEST_APPROVED,
    )
    assert {created.tenant_id, decided.tenant_id, approved.tenant_id} == {fleet.alpha.pk}
    assert created.subject_id == decided.subject_id == approved.subject_id == str(access.pk)
    assert created.data == {
        "site": fleet.sites["alpha"].code,
        "person": "tech",
        "requested_by": "padmin",
        "reason": "replace a pump",
        "justification": "provider_maintenance",
        "scope": "physical_repair",
        "office_country": "",
        "physical_country": "",
        "break_glass": False,
        "starts_at": timestamp(access.starts_at),
        "ends_at": timestamp(access.ends_at),
        "status": "pending",
    }
    assert decided.data["status"] == "approved" and decided.data["decided_by"] == "alpha-admin"
    assert approved.data["approvers"] == ["alpha-admin"]


def test_a_refused_or_rolled_back_access_request_leaves_no_event(fleet):
    body = access_body(fleet)
    body["ends_at"] = body["starts_at"]  # an empty window
    response = fleet.client("provider_admin").post(
        "/api/v1/sovereignty/access-requests/", body, format="json"
    )
    assert response.status_code == 400
    start = timezone.now()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.request_access(
            AccessRequest(
                tenant=fleet.alpha,
                site=fleet.sites["alpha"],
                person=fleet.people["technician"],
                requested_by=fleet.people["provider_admin"],
                reason="x",
                starts_at=start,
                ends_at=start + dt.timedelta(hours=1),
            ),
            CTX,
        )
        raise RuntimeError("rolled back")
    assert not Event.objects.exists()
