"""The console shows an access request as the lockbox sees it: a request past its deadline is
not offered for a vote (whether or not the beat job has written its expiry yet), and an N of M
request says how many approvals it has after each vote instead of calling itself approved."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from tenants.choices import Role
from tenants.sovereignty.models import AccessRequest
from tests.support.fleet import make_person

pytestmark = pytest.mark.django_db

PAGE = "/console/sovereignty/"


def request_for(fleet, reason, **fields) -> AccessRequest:
    now = timezone.now()
    return AccessRequest.objects.create(
        tenant=fleet.alpha,
        site=fleet.sites["alpha"],
        person=fleet.people["technician"],
        requested_by=fleet.people["provider_admin"],
        reason=reason,
        starts_at=now,
        ends_at=now + dt.timedelta(hours=4),
        **fields,
    )


def page_as(client, user) -> str:
    client.force_login(user)
    response = client.get(PAGE)
    assert response.status_code == 200
    return response.content.decode()


def test_a_request_past_its_deadline_is_not_pending_before_the_beat_job_runs(client, fleet):
    lapsed = request_for(
        fleet, "lapsed pump swap", answer_by=timezone.now() - dt.timedelta(minutes=1)
    )
    live = request_for(fleet, "live pump swap", answer_by=timezone.now() + dt.timedelta(hours=1))
    page = page_as(client, fleet.people["alpha_admin"])
    assert "live pump swap" in page and f"Approve access request #{live.pk} " in page
    assert "lapsed pump swap" not in page
    assert f"Approve access request #{lapsed.pk} " not in page
    lapsed.refresh_from_db()
    assert lapsed.status == "pending"  # only shown as it is; the beat job writes it


def test_one_vote_of_two_is_shown_as_one_of_two_and_still_pending(client, fleet):
    first = fleet.people["alpha_admin"]
    second = make_person("alpha-admin-2", Role.TENANT_ADMIN, fleet.alpha)
    access = request_for(
        fleet,
        "replace a cold plate",
        approval="n_of_m",
        approvals_needed=2,
        approvers=[first.pk, second.pk],
    )
    assert "0 of 2 approvals" in page_as(client, first)

    response = client.post(f"/console/sovereignty/access-requests/{access.pk}/approve/")
    assert response.status_code == 302
    after = client.get(PAGE).content.decode()
    assert "1 of 2 approvals, still pending" in after  # the message, not "approved"
    assert "approved." not in after
    assert "1 of 2 approvals" in after and "you have voted" in after
    assert f"Approve access request #{access.pk} " not in after  # one vote each
    access.refresh_from_db()
    assert access.status == "pending"

    page = page_as(client, second)
    assert "1 of 2 approvals" in page and f"Approve access request #{access.pk} " in page
    client.post(f"/console/sovereignty/access-requests/{access.pk}/approve/")
    done = client.get(PAGE).content.decode()
    assert f"Access request #{access.pk}: approved." in done
    assert "replace a cold plate" not in done
    access.refresh_from_db()
    assert access.status == "approved"


def test_an_admin_not_named_for_n_of_m_sees_it_but_may_not_vote(client, fleet):
    named = make_person("alpha-admin-2", Role.TENANT_ADMIN, fleet.alpha)
    third = make_person("alpha-admin-3", Role.TENANT_ADMIN, fleet.alpha)
    access = request_for(
        fleet,
        "firmware rescue",
        approval="n_of_m",
        approvals_needed=2,
        approvers=[fleet.people["alpha_admin"].pk, named.pk],
    )
    page = page_as(client, third)
    assert "firmware rescue" in page and "0 of 2 approvals" in page
    assert f"Approve access request #{access.pk} " not in page
