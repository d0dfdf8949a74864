"""The lockbox (issue 14 item 3): justification codes, scope, the technician's location, the
tenant's policy (pre-approved / one / N of M / never), expiry, extend, revoke; and the maintain
workflow re-checking the grant at every later step that needs the person."""

import datetime as dt

import pytest
from django.utils import timezone

from tenants.choices import Role
from tenants.events.kinds import EventKind
from tenants.events.models import Event
from tenants.sovereignty import services
from tenants.sovereignty.models import (
    AccessApproval,
    AccessRequest,
    DecisionRecord,
)
from tests.support.fleet import CTX, client_for, make_person
from tests.support.schema import assert_conforms
from tests.support.sovereignty import active_rule

pytestmark = pytest.mark.django_db
REQUESTS = "/api/v1/sovereignty/access-requests/"


def policy_url(fleet) -> str:
    return f"/api/v1/sovereignty/lockbox-policies/{fleet.alpha.pk}/"


def body(fleet, **more) -> dict:
    now = timezone.now()
    return {
        "site": fleet.sites["alpha"].pk,
        "person": fleet.people["technician"].pk,
        "reason": "replace CDU pump",
        "justification": "provider_maintenance",
        "scope": "physical_repair",
        "office_country": "DE",
        "physical_country": "DE",
        "starts_at": (now - dt.timedelta(minutes=5)).isoformat(),
        "ends_at": (now + dt.timedelta(hours=4)).isoformat(),
        **more,
    }


def file_request(fleet, **more) -> dict:
    response = fleet.client("provider_admin").post(REQUESTS, body(fleet, **more), format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def admins(fleet):
    """alpha's three admins; the first is the fleet's own."""
    extra = [make_person(f"alpha-admin{i}", Role.TENANT_ADMIN, fleet.alpha) for i in (2, 3)]
    return [fleet.people["alpha_admin"], *extra]


def put_policy(fleet, **policy):
    response = fleet.client("alpha_admin").put(policy_url(fleet), policy, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_the_policy_is_the_tenants_own_with_secure_defaults(fleet, admins):
    shown = fleet.client("alpha_admin").get(policy_url(fleet))
    assert shown.status_code == 200, shown.content
    assert_conforms(shown)
    assert shown.json()["default_approval"] == "one"
    assert shown.json()["emergency_codes"] == []
    assert shown.json()["physical_in_site_country"] is True
    assert shown.json()["entries"][0]["approval"] == "never"  # legal requests
    assert fleet.client("alpha_viewer").get(policy_url(fleet)).status_code == 403
    assert fleet.client("provider_admin").put(policy_url(fleet), {}, format="json").status_code == (
        403
    )
    assert fleet.client("beta_admin").get(policy_url(fleet)).status_code == 404
    stranger = fleet.people["beta_admin"].pk
    refused = fleet.client("alpha_admin").put(
        policy_url(fleet),
        {"entries": [{"approval": "n_of_m", "n": 2, "approvers": [admins[0].pk, stranger]}]},
        format="json",
    )
    assert refused.status_code == 400
    assert_conforms(refused, "PUT")
    assert refused.json()["errors"][0]["field"] == "entries"
    assert refused.json()["errors"][0]["code"] == "not_tenant_admin"
    too_long = fleet.client("alpha_admin").put(
        policy_url(fleet), {"break_glass_minutes": 600}, format="json"
    )
    assert too_long.status_code == 400
    assert too_long.json()["errors"][0]["field"] == "break_glass_minutes"


def test_n_of_m_needs_n_distinct_named_approvers(fleet, admins):
    active_rule(fleet, "customer_approval")
    outsider = make_person("alpha-admin4", Role.TENANT_ADMIN, fleet.alpha)
    put_policy(
        fleet,
        entries=[
            {
                "justification": "provider_maintenance",
                "scope": "physical_repair",
                "approval": "n_of_m",
                "n": 2,
                "approvers": [a.pk for a in admins],
            }
        ],
    )
    access = file_request(fleet)
    assert (access["status"], access["approval"], access["approvals_needed"]) == (
        "pending",
        "n_of_m",
        2,
    )
    approve = f"{REQUESTS}{access['id']}/approve/"
    tech, site = fleet.people["technician"], fleet.sites["alpha"]

    not_named = client_for(outsider).post(approve)
    assert not_named.status_code == 403 and not_named.json()["code"] == "not_an_approver"
    assert fleet.client("beta_admin").post(approve).status_code == 404
    first = client_for(admins[0]).post(approve)
    assert first.status_code == 200 and first.json()["status"] == "pending"  # N−1: still shut
    assert client_for(admins[0]).post(approve).json()["code"] == "already_voted"
    with pytest.raises(services.SovereigntyDenied):
        services.check_site_access(tech, site, CTX, from_country="DE")

    second = client_for(admins[2]).post(approve)
    assert second.status_code == 200 and second.json()["status"] == "approved"
    assert_conforms(second, "POST")
    assert [v["approver"] for v in second.json()["votes"]] == ["alpha-admin", "alpha-admin3"]
    assert services.check_site_access(tech, site, CTX, from_country="DE").allowed
    late = client_for(admins[1]).post(approve)
    assert late.status_code == 409 and late.json()["code"] == "already_decided"
    # Each vote is who and when, in the audit and transparency logs; the tenant heard it.
    assert AccessApproval.objects.filter(request_id=access["id"]).count() == 2
    assert DecisionRecord.objects.filter(action="lockbox.approve", tenant_id=fleet.alpha.pk).count()
    assert Event.objects.filter(kind=EventKind.ACCESS_REQUEST_APPROVED).count() == 1


def test_a_rejection_by_one_approver_rejects(fleet, admins):
    put_policy(
        fleet,
        entries=[{"approval": "n_of_m", "n": 2, "approvers": [a.pk for a in admins]}],
    )
    access = file_request(fleet)
    rejected = client_for(admins[1]).post(f"{REQUESTS}{access['id']}/reject/")
    assert rejected.json()["status"] == "rejected"


def test_a_never_code_is_refused_and_pre_approved_opens_at_once(fleet):
    refused = fleet.client("provider_admin").post(
        REQUESTS, body(fleet, justification="legal_request"), format="json"
    )
    assert refused.status_code == 403 and refused.json()["code"] == "justification_never"
    assert refused.json()["errors"][0]["field"] == "justification"
    assert not AccessRequest.objects.exists()
    put_policy(
        fleet,
        entries=[
            {"justification": "customer_support", "approval": "pre_approved"},
            {"scope": "firmware", "approval": "never"},
        ],
    )
    assert file_request(fleet, justification="customer_support")["status"] == "approved"
    firmware = fleet.client("provider_admin").post(
        REQUESTS, body(fleet, scope="firmware"), format="json"
    )
    assert firmware.status_code == 403 and firmware.json()["code"] == "justification_never"


def test_locations_are_iso_3166_codes(fleet):
    typo = fleet.client("provider_admin").post(
        REQUESTS, body(fleet, physical_country="XX"), format="json"
    )
    assert typo.status_code == 400 and typo.json()["errors"][0]["field"] == "physical_country"
    office = fleet.client("alpha_admin").put(
        policy_url(fleet), {"office_countries": ["Germany"[:2]]}, format="json"
    )
    assert office.status_code == 400 and office.json()["errors"][0]["field"] == "office_countries"


def test_a_technician_abroad_is_denied(fleet):
    active_rule(fleet, "customer_approval")
    abroad = fleet.client("provider_admin").post(
        REQUESTS, body(fleet, physical_country="US"), format="json"
    )
    assert abroad.status_code == 403 and abroad.json()["code"] == "location_denied"
    access = file_request(fleet)  # in DE, as the site
    fleet.client("alpha_admin").post(f"{REQUESTS}{access['id']}/approve/")
    tech, site = fleet.people["technician"], fleet.sites["alpha"]
    assert services.check_site_access(tech, site, CTX, from_country="DE").allowed
    # The grant does not follow the person abroad: a use from FR is not covered.
    with pytest.raises(services.SovereigntyDenied):
        services.check_site_access(tech, site, CTX, from_country="FR")
    put_policy(fleet, office_countries=["AT"])
    with pytest.raises(services.SovereigntyDenied):
        services.check_site_access(tech, site, CTX, from_country="DE")  # a DE office now refused


def test_an_unanswered_request_expires_the_same_for_a_read_and_the_beat_job(fleet):
    access = file_request(fleet)
    assert access["answer_by"] is not None
    past = timezone.now() - dt.timedelta(seconds=1)
    AccessRequest.objects.filter(pk=access["id"]).update(answer_by=past)
    url = f"{REQUESTS}{access['id']}/"
    lazily = fleet.client("alpha_viewer").get(url)
    assert lazily.json()["status"] == "expired"  # lazily
    assert_conforms(lazily)
    assert AccessRequest.objects.get(pk=access["id"]).status == "pending"  # not yet written
    late = fleet.client("alpha_admin").post(f"{url}approve/")
    assert late.status_code == 409 and late.json()["code"] == "already_decided"
    from tenants.sovereignty.tasks import expire_access_requests

    assert expire_access_requests() == 1
    assert AccessRequest.objects.get(pk=access["id"]).status == "expired"
    assert fleet.client("alpha_viewer").get(url).json()["status"] == "expired"
    assert Event.objects.filter(
        kind=EventKind.ACCESS_REQUEST_EXPIRED, tenant_id=fleet.alpha.pk
    ).exists()
    assert expire_access_requests() == 0
    from django_celery_beat.models import PeriodicTask

    assert PeriodicTask.objects.filter(task="tenants.sovereignty.expire_access_requests").exists()


def test_extend_is_approved_again_and_revoke_ends_it_with_its_extensions(fleet):
    active_rule(fleet, "customer_approval")
    access = file_request(fleet)
    url = f"{REQUESTS}{access['id']}/"
    early = fleet.client("provider_admin").post(
        f"{url}extend/", {"ends_at": access["ends_at"]}, format="json"
    )
    assert early.status_code == 409  # not approved yet: nothing to extend
    fleet.client("alpha_admin").post(f"{url}approve/")
    later = (dt.datetime.fromisoformat(access["ends_at"]) + dt.timedelta(hours=2)).isoformat()
    assert (
        fleet.client("alpha_admin").post(f"{url}extend/", {"ends_at": later}, format="json")
    ).status_code == 403  # the provider asks
    extension = fleet.client("provider_admin").post(
        f"{url}extend/", {"ends_at": later}, format="json"
    )
    assert extension.status_code == 201, extension.content
    assert_conforms(extension, "POST")
    ext = extension.json()
    assert (ext["status"], ext["extends"], ext["starts_at"]) == (
        "pending",
        access["id"],
        access["ends_at"],
    )
    assert fleet.client("provider_admin").post(f"{url}revoke/").status_code == 403
    revoked = fleet.client("alpha_admin").post(f"{url}revoke/", {"note": "done"}, format="json")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert_conforms(revoked, "POST")
    assert AccessRequest.objects.get(pk=ext["id"]).status == "revoked"
    assert fleet.client("alpha_admin").post(f"{url}revoke/").json()["code"] == "already_decided"
    tech, site = fleet.people["technician"], fleet.sites["alpha"]
    with pytest.raises(services.SovereigntyDenied):
        services.check_site_access(tech, site, CTX, from_country="DE")
    assert Event.objects.filter(kind=EventKind.ACCESS_REQUEST_REVOKED).count() == 2
