"""An access request made in the Django admin is made as through the API: by the provider, for
the site's tenant, through ``request_access``, so the tenant's log and the audit log have it;
it is never changed or deleted there."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from tenants.choices import Role
from tenants.events.kinds import EventKind
from tenants.events.models import Event
from tenants.models import AuditEvent
from tenants.sovereignty.models import AccessRequest
from tests.support.fleet import make_person

pytestmark = pytest.mark.django_db
ADD = "/admin/sovereignty/accessrequest/add/"


def form(fleet, hours: int = 2) -> dict:
    start = (timezone.now() + dt.timedelta(days=1)).replace(microsecond=0)
    end = start + dt.timedelta(hours=hours)
    return {
        "site": fleet.sites["alpha"].pk,
        "person": fleet.people["technician"].pk,
        "reason": "replace a pump",
        "justification": "provider_maintenance",  # the lockbox's codes (issue 14)
        "scope": "physical_repair",
        "starts_at_0": start.strftime("%Y-%m-%d"),
        "starts_at_1": start.strftime("%H:%M:%S"),
        "ends_at_0": end.strftime("%Y-%m-%d"),
        "ends_at_1": end.strftime("%H:%M:%S"),
    }


@pytest.fixture
def provider_admin(fleet, client):
    padmin = fleet.people["provider_admin"]
    padmin.is_superuser = True
    padmin.save()
    client.force_login(padmin)
    return client


def test_an_access_request_added_in_the_admin_is_announced_and_audited(fleet, provider_admin):
    assert provider_admin.get(ADD).status_code == 200
    response = provider_admin.post(ADD, form(fleet), HTTP_X_REQUEST_ID="admin-access-1")
    assert response.status_code == 302, response.content.decode()[-3000:]
    access = AccessRequest.objects.get()
    assert access.tenant_id == fleet.alpha.pk  # the site's tenant
    assert access.requested_by == fleet.people["provider_admin"]
    assert access.status == "pending"
    event = Event.objects.get(kind=EventKind.ACCESS_REQUEST_CREATED)
    assert event.tenant_id == fleet.alpha.pk and event.subject_id == str(access.pk)
    assert event.data["requested_by"] == "padmin" and event.data["reason"] == "replace a pump"
    audit = AuditEvent.objects.get(object_type="sovereignty.accessrequest", action="create")
    assert audit.source == "admin" and audit.request_id == "admin-access-1"
    assert audit.actor_username == "padmin"

    change = f"/admin/sovereignty/accessrequest/{access.pk}/change/"
    assert provider_admin.get(change).status_code == 200  # shown, read-only
    provider_admin.post(change, form(fleet, hours=3))
    assert AccessRequest.objects.get().ends_at == access.ends_at
    delete = f"/admin/sovereignty/accessrequest/{access.pk}/delete/"
    assert provider_admin.post(delete, {"post": "yes"}).status_code == 403
    assert AccessRequest.objects.filter(pk=access.pk).exists()


def test_a_refused_access_request_in_the_admin_leaves_nothing(fleet, provider_admin, client):
    too_long = provider_admin.post(ADD, form(fleet, hours=24 * 15))
    assert too_long.status_code == 200  # the form again, with the model's reason
    assert "at most 14 days" in too_long.content.decode()
    assert not AccessRequest.objects.exists() and not Event.objects.exists()

    # Staff with the admin's permission but no provider role: refused, as by the API.
    staffer = make_person("staffer", Role.TENANT_ADMIN, fleet.alpha, is_staff=True)
    staffer.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_accessrequest", "view_accessrequest"])
    )
    client.force_login(staffer)
    refused = client.post(ADD, form(fleet))
    assert refused.status_code == 200
    assert "Only the provider requests access" in refused.content.decode()
    assert not AccessRequest.objects.exists() and not Event.objects.exists()
