"""Provider-maintained facts (a site's country, accreditations, air-gapped flag; a technician's
nationality, residency, clearance): audited into every affected tenant's log, and announced
before a change that would flip a live decision takes effect."""

import datetime as dt

import pytest
from django.utils import timezone

from factory.inventory.models import Site
from factory.inventory.services import save_site
from tenants.access import actor_for
from tenants.events.models import Event
from tenants.models import AuditEvent, User
from tenants.services.changes import ChangeContext
from tenants.sovereignty.models import (
    AccessRequest,
    AccessRequestStatus,
    FactChangeNotice,
    PendingFactChange,
    ProtectedAsset,
)
from tenants.sovereignty.services import facts
from tests.support.admin import admin_form_data
from tests.support.api import assert_error_body
from tests.support.fleet import CTX
from tests.support.sovereignty import active_rule

SITES = "/api/v1/sites/"
ASSETS = "/api/v1/sovereignty/assets/"
EVALUATE = "/api/v1/sovereignty/evaluate/"
NOTICES = "/api/v1/sovereignty/fact-changes/"


@pytest.fixture(autouse=True)
def notice(settings):
    settings.SOVEREIGNTY_FACT_NOTICE = dt.timedelta(hours=24)


def _provider(fleet):
    return ChangeContext(actor_for(fleet.people["provider_admin"]), source="admin")


def _fact_audits(tenant, object_type="inventory.site"):
    return list(
        AuditEvent.objects.filter(tenant_id=tenant.pk, object_type=object_type)
        .exclude(after__fact_change__isnull=True)
        .order_by("id")
    )


def _dataset(fleet, name="patients"):
    created = fleet.client("alpha_operator").post(
        ASSETS,
        {
            "tenant": fleet.alpha.pk,
            "name": name,
            "kind": "dataset",
            "classification": "confidential",
            "site": fleet.sites["alpha"].pk,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    return created.json()


def _evaluate_new_dataset(fleet):
    """Would a new dataset be placed at alpha's site now? (The engine, not a write.)"""
    asset, _ = ProtectedAsset.objects.get_or_create(
        tenant=fleet.alpha, name="probe", kind="dataset", classification="confidential"
    )
    answer = fleet.client("alpha_admin").post(
        EVALUATE,
        {"action": "place_asset", "site": fleet.sites["alpha"].pk, "asset": asset.pk},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    return answer.json()["allowed"]


def test_a_site_country_change_is_in_every_affected_tenants_log(fleet):
    site = fleet.sites["alpha"]
    # beta holds an asset at alpha's site (placed before any rule): beta is affected too.
    ProtectedAsset.objects.create(
        tenant=fleet.beta, name="beta-mirror", kind="replica", classification="internal", site=site
    )
    changed = fleet.client("provider_admin").patch(
        f"{SITES}{site.pk}/", {"country": "AT"}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["country"] == "AT"  # nothing flips: it applies at once
    assert Site.objects.get(pk=site.pk).country == "AT"
    (theirs,) = _fact_audits(fleet.beta)
    assert theirs.before == {"country": "DE"}
    assert theirs.after == {"country": "AT", "fact_change": "applied"}
    assert theirs.actor_username == "padmin"
    owner = AuditEvent.objects.filter(
        tenant_id=fleet.alpha.pk, object_type="inventory.site", object_id=str(site.pk)
    ).latest("id")
    assert owner.before["country"] == "DE" and owner.after["country"] == "AT"
    # The admin's path (accreditations are kept there): the same service.
    site.refresh_from_db()
    site.accreditations = ["bsi-c5"]
    save_site(site, _provider(fleet))
    latest = _fact_audits(fleet.beta)[-1]
    assert (latest.before, latest.after["accreditations"]) == ({"accreditations": []}, ["bsi-c5"])
    assert not PendingFactChange.objects.exists()
    assert not Event.objects.filter(kind__startswith="fact_change.").exists()


def test_a_flip_causing_change_is_announced_and_waits_for_its_notice(fleet):
    rule = active_rule(fleet, "residency", allowed=["EU"])
    asset = _dataset(fleet)
    site = fleet.sites["alpha"]
    changed = fleet.client("provider_admin").patch(
        f"{SITES}{site.pk}/", {"country": "US", "name": "Frankfurt One"}, format="json"
    )
    assert changed.status_code == 200, changed.content
    stored = Site.objects.get(pk=site.pk)
    assert stored.country == "DE" and stored.name == "Frankfurt One"  # facts held, rest applied

    change = PendingFactChange.objects.get()
    assert change.status == "pending" and change.before == {"country": "DE"}
    assert change.after == {"country": "US"}
    hours = (change.effective_at - timezone.now()) / dt.timedelta(hours=1)
    assert 23.9 < hours <= 24
    notice = FactChangeNotice.objects.get()
    assert notice.tenant_id == fleet.alpha.pk
    assert notice.flips == [
        {
            "subject": "asset",
            "id": str(asset["id"]),
            "name": "patients",
            "becomes": "denied",
        }
    ]
    event = Event.objects.get(kind="fact_change.announced")
    assert event.tenant_id == fleet.alpha.pk and event.data["after"] == {"country": "US"}
    (pending_audit,) = _fact_audits(fleet.alpha)
    assert pending_audit.after["fact_change"] == "pending"

    # Decisions keep the old fact until the change is effective.
    assert _evaluate_new_dataset(fleet) is True
    listed = fleet.client("alpha_viewer").get(NOTICES).json()
    assert listed["count"] == 1 and listed["results"][0]["change"]["status"] == "pending"
    assert fleet.client("beta_admin").get(NOTICES).json()["count"] == 0
    again = fleet.client("provider_admin").patch(
        f"{SITES}{site.pk}/", {"country": "FR"}, format="json"
    )
    assert_error_body(again, 409)
    assert again.json()["errors"][0]["field"] == "country"

    assert facts.apply_due(timezone.now() + dt.timedelta(hours=23)) == []
    assert Site.objects.get(pk=site.pk).country == "DE"
    assert facts.apply_due(timezone.now() + dt.timedelta(hours=25)) == [change.pk]
    assert Site.objects.get(pk=site.pk).country == "US"
    assert _evaluate_new_dataset(fleet) is False
    assert Event.objects.filter(kind="fact_change.applied", tenant=fleet.alpha).count() == 1
    assert rule["cedar_id"]


def test_the_tenant_acknowledging_applies_it_at_once_the_provider_cannot(fleet):
    active_rule(fleet, "accreditation", min_classification="confidential", air_gapped=True)
    site = fleet.sites["alpha"]
    Site.objects.filter(pk=site.pk).update(air_gapped=True)
    _dataset(fleet)
    site.refresh_from_db()
    site.air_gapped = False
    assert save_site(site, _provider(fleet)).air_gapped is True
    assert Site.objects.get(pk=site.pk).air_gapped is True
    notice = FactChangeNotice.objects.get()
    url = f"{NOTICES}{notice.pk}/acknowledge/"
    assert_error_body(fleet.client("provider_admin").post(url), 403)
    assert_error_body(fleet.client("alpha_operator").post(url), 403)
    assert_error_body(fleet.client("beta_admin").post(url), 404)
    assert Site.objects.get(pk=site.pk).air_gapped is True
    done = fleet.client("alpha_admin").post(url)
    assert done.status_code == 200, done.content
    assert done.json()["acknowledged_by"] == "alpha-admin"
    assert done.json()["change"]["status"] == "applied"
    assert Site.objects.get(pk=site.pk).air_gapped is False


def test_a_technicians_nationality_change_reaches_tenants_with_personnel_rules(fleet):
    active_rule(fleet, "personnel", nationalities=["DE"])
    tech = User.objects.get(username="tech")
    now = timezone.now()
    access = AccessRequest.objects.create(
        tenant=fleet.alpha,
        site=fleet.sites["alpha"],
        person=tech,
        requested_by=fleet.people["provider_admin"],
        reason="replace a PSU",
        starts_at=now - dt.timedelta(hours=1),
        ends_at=now + dt.timedelta(hours=8),
        status=AccessRequestStatus.APPROVED,
    )
    tech.nationality = "US"
    facts.save_person(tech, CTX)
    assert User.objects.get(pk=tech.pk).nationality == "DE"  # held: it would end the access
    notice = FactChangeNotice.objects.get()
    assert notice.tenant_id == fleet.alpha.pk
    assert notice.flips[0]["subject"] == "access-request"
    assert notice.flips[0]["id"] == str(access.pk)
    assert notice.flips[0]["becomes"] == "denied"
    (logged,) = _fact_audits(fleet.alpha, "tenants.user")
    assert logged.before == {"nationality": "DE"} and logged.after["nationality"] == "US"
    assert not _fact_audits(fleet.beta, "tenants.user")  # no personnel rule, no request

    # A change that flips nothing applies at once, still audited for the affected tenant.
    facts.apply_due(timezone.now() + dt.timedelta(days=2))
    tech.refresh_from_db()
    assert tech.nationality == "US"
    tech.clearance = "top-secret"
    facts.save_person(tech, CTX)
    assert User.objects.get(pk=tech.pk).clearance == "top-secret"
    assert PendingFactChange.objects.filter(status="pending").count() == 0
    assert _fact_audits(fleet.alpha, "tenants.user")[-1].after["clearance"] == "top-secret"


def test_the_admin_goes_through_the_same_notice(fleet, client):
    """The Django admin's site and person forms save through ``save_site`` / ``save_person``."""
    active_rule(fleet, "residency", allowed=["EU"])
    active_rule(fleet, "personnel", nationalities=["DE"])
    _dataset(fleet)
    tech = User.objects.get(username="tech")
    now = timezone.now()
    AccessRequest.objects.create(
        tenant=fleet.alpha,
        site=fleet.sites["alpha"],
        person=tech,
        requested_by=fleet.people["provider_admin"],
        reason="replace a PSU",
        starts_at=now,
        ends_at=now + dt.timedelta(hours=8),
        status=AccessRequestStatus.APPROVED,
    )
    root = User.objects.create_superuser("root", password="pw")
    client.force_login(root)

    url = f"/admin/inventory/site/{fleet.sites['alpha'].pk}/change/"
    data = admin_form_data(client.get(url))
    data["country"] = "US"
    assert client.post(url, data).status_code == 302
    assert Site.objects.get(pk=fleet.sites["alpha"].pk).country == "DE"
    assert PendingFactChange.objects.get(subject_type="site").after == {"country": "US"}

    url = f"/admin/tenants/user/{tech.pk}/change/"
    data = admin_form_data(client.get(url))
    data["nationality"] = "US"
    assert "date_joined" not in data  # the system's clock: read-only, never posted
    answer = client.post(url, data)
    assert answer.status_code == 302, answer.context["adminform"].form.errors
    assert User.objects.get(pk=tech.pk).nationality == "DE"
    assert PendingFactChange.objects.get(subject_type="person").after == {"nationality": "US"}
    assert Event.objects.filter(kind="fact_change.announced", tenant=fleet.alpha).count() == 2
