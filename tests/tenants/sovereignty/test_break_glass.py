"""Break-glass (issue 14 item 4): only for codes the tenant allows for emergencies, only for the
policy's fixed minutes, the tenant told at once (an event, so its webhooks), and flagged until one
of its admins reviews it."""

import datetime as dt

import pytest

from tenants.events.kinds import EventKind
from tenants.events.models import Event
from tenants.sovereignty import services
from tenants.sovereignty.models import AccessRequest, DecisionRecord
from tests.support.fleet import CTX
from tests.support.schema import assert_conforms
from tests.support.sovereignty import active_rule

pytestmark = pytest.mark.django_db
REQUESTS = "/api/v1/sovereignty/access-requests/"
BREAK_GLASS = f"{REQUESTS}break-glass/"


def emergency(fleet, **more) -> dict:
    return {
        "site": fleet.sites["alpha"].pk,
        "person": fleet.people["technician"].pk,
        "reason": "coolant leak alarm in R01",
        "justification": "production_alert",
        "scope": "physical_repair",
        "office_country": "DE",
        "physical_country": "DE",
        **more,
    }


def allow_break_glass(fleet, minutes=30):
    response = fleet.client("alpha_admin").put(
        f"/api/v1/sovereignty/lockbox-policies/{fleet.alpha.pk}/",
        {"emergency_codes": ["production_alert"], "break_glass_minutes": minutes},
        format="json",
    )
    assert response.status_code == 200, response.content


def test_break_glass_needs_an_emergency_code_of_the_tenant(fleet):
    provider = fleet.client("provider_admin")
    refused = provider.post(BREAK_GLASS, emergency(fleet), format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "break_glass_not_allowed"
    allow_break_glass(fleet)
    other_code = provider.post(
        BREAK_GLASS, emergency(fleet, justification="provider_maintenance"), format="json"
    )
    assert other_code.status_code == 403
    abroad = provider.post(BREAK_GLASS, emergency(fleet, physical_country="US"), format="json")
    assert abroad.status_code == 403 and abroad.json()["code"] == "location_denied"
    tenant = fleet.client("alpha_admin").post(BREAK_GLASS, emergency(fleet), format="json")
    assert tenant.status_code == 403
    assert not AccessRequest.objects.exists() and not Event.objects.exists()


def test_break_glass_is_short_notified_at_once_and_flagged_until_reviewed(fleet):
    active_rule(fleet, "customer_approval")
    allow_break_glass(fleet, minutes=30)
    used = fleet.client("provider_admin").post(BREAK_GLASS, emergency(fleet), format="json")
    assert used.status_code == 201, used.content
    access = used.json()
    assert (access["status"], access["break_glass"], access["needs_review"]) == (
        "approved",
        True,
        True,
    )
    starts, ends = (dt.datetime.fromisoformat(access[k]) for k in ("starts_at", "ends_at"))
    assert ends - starts == dt.timedelta(minutes=30)

    # The tenant is told at once; the use is in its transparency log.
    told = Event.objects.get(kind=EventKind.ACCESS_BREAK_GLASS)
    assert told.tenant_id == fleet.alpha.pk and told.data["needs_review"] is True
    assert told.data["justification"] == "production_alert"
    assert DecisionRecord.objects.filter(
        tenant_id=fleet.alpha.pk, action="lockbox.break_glass"
    ).exists()
    # It opens the site for the person now, without an approval.
    tech, site = fleet.people["technician"], fleet.sites["alpha"]
    assert services.check_site_access(tech, site, CTX, from_country="DE").allowed

    # Flagged and listable until reviewed.
    admin = fleet.client("alpha_admin")
    flagged = admin.get(f"{REQUESTS}?needs_review=true").json()
    assert [a["id"] for a in flagged["results"]] == [access["id"]]
    assert fleet.client("beta_admin").get(f"{REQUESTS}?needs_review=true").json()["count"] == 0
    review = f"{REQUESTS}{access['id']}/review/"
    assert fleet.client("alpha_viewer").post(review, {"note": "ok"}, format="json").status_code == (
        403
    )
    assert fleet.client("beta_admin").post(review, {"note": "ok"}, format="json").status_code == (
        404
    )
    assert admin.post(review, {}, format="json").status_code == 400  # a note is required
    reviewed = admin.post(review, {"note": "leak confirmed by our NOC"}, format="json")
    assert reviewed.status_code == 200, reviewed.content
    assert_conforms(reviewed, "POST")
    assert reviewed.json()["needs_review"] is False
    assert reviewed.json()["review_note"] == "leak confirmed by our NOC"
    assert admin.get(f"{REQUESTS}?needs_review=true").json()["count"] == 0
    again = admin.post(review, {"note": "again"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "already_reviewed"
    assert_conforms(again, "POST")
    # Break-glass cannot be stretched: no extension.
    extended = fleet.client("provider_admin").post(
        f"{REQUESTS}{access['id']}/extend/",
        {"ends_at": (ends + dt.timedelta(hours=1)).isoformat()},
        format="json",
    )
    assert extended.status_code == 409 and extended.json()["code"] == "break_glass_fixed"


def test_a_normal_request_cannot_be_reviewed_as_break_glass(fleet):
    allow_break_glass(fleet)
    start = dt.datetime.now(dt.UTC)
    normal = fleet.client("provider_admin").post(
        REQUESTS,
        {
            **emergency(fleet),
            "starts_at": start.isoformat(),
            "ends_at": (start + dt.timedelta(hours=1)).isoformat(),
        },
        format="json",
    )
    assert normal.status_code == 201
    review = fleet.client("alpha_admin").post(
        f"{REQUESTS}{normal.json()['id']}/review/", {"note": "x"}, format="json"
    )
    assert review.status_code == 400 and review.json()["code"] == "not_break_glass"
