"""The customer's boundary belongs to the customer: groups are immutable versions, rules pin the
versions they name, a group change reaches a rule only when its tenant re-activates it, active
rules are retired rather than deleted, and activation shows and records its what-if."""

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from factory.inventory.models import Site
from tenants.models import AuditEvent
from tenants.services.changes import save_object
from tenants.sovereignty import services
from tenants.sovereignty.core import cedar
from tenants.sovereignty.core.model import Action, PersonFacts, Request
from tenants.sovereignty.models import (
    JurisdictionGroup,
    JurisdictionGroupVersion,
    ProtectedAsset,
    SovereigntyRule,
)
from tenants.sovereignty.models.groups import AppendOnly
from tests.support.fleet import CTX
from tests.support.schema import assert_conforms
from tests.support.sovereignty import RULES, active_rule

GROUPS = "/api/v1/sovereignty/groups/"
ASSETS = "/api/v1/sovereignty/assets/"


def eu() -> JurisdictionGroup:
    return JurisdictionGroup.objects.get(tenant__isnull=True, code="EU")


def place(fleet, site, name="m"):
    return fleet.client("alpha_operator").post(
        ASSETS,
        {
            "tenant": fleet.alpha.pk,
            "name": name,
            "kind": "model",
            "classification": "secret",
            "site": site.pk,
        },
        format="json",
    )


def draft(fleet, kind, **params):
    created = fleet.client("alpha_admin").post(
        RULES,
        {"tenant": fleet.alpha.pk, "name": kind, "kind": kind, "params": params},
        format="json",
    )
    assert created.status_code == 201, created.content
    return created.json()


def test_builtin_groups_start_at_version_one(db):
    for code in ("EU", "EEA"):
        group = JurisdictionGroup.objects.get(tenant__isnull=True, code=code)
        assert group.version == 1
        (v1,) = group.versions.all()
        assert (v1.version, v1.countries) == (1, sorted(group.countries))
    assert "US" not in eu().countries


def test_nobody_edits_or_deletes_a_builtin_group_through_the_api(fleet):
    group = eu()
    for who in ("provider_admin", "alpha_admin"):
        client = fleet.client(who)
        patched = client.patch(
            f"{GROUPS}{group.pk}/", {"countries": [*group.countries, "US"]}, format="json"
        )
        assert patched.status_code == 403, patched.content
        # a provider admin may write groups, but not this one; a tenant's role may not at all
        assert patched.json()["code"] == ("builtin_group" if who == "provider_admin" else "role")
        assert client.delete(f"{GROUPS}{group.pk}/").status_code == 403
    created = fleet.client("provider_admin").post(
        GROUPS,
        {"tenant": None, "code": "NORDIC", "name": "Nordic", "countries": ["SE", "NO"]},
        format="json",
    )
    assert created.status_code == 403, created.content
    assert created.json()["code"] == "builtin_group"
    group.refresh_from_db()
    assert "US" not in group.countries and group.version == 1
    assert not JurisdictionGroup.objects.filter(code="NORDIC").exists()


def test_admin_shows_builtin_groups_read_only(fleet):
    from django.test import Client

    browser = Client()
    browser.force_login(fleet.people["provider_admin"])
    url = f"/admin/sovereignty/jurisdictiongroup/{eu().pk}/change/"
    page = browser.post(url, {"code": "EU", "name": "EU", "countries": '["DE", "US"]'})
    assert page.status_code == 403
    assert (
        browser.post(
            f"/admin/sovereignty/jurisdictiongroup/{eu().pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )
    assert "US" not in eu().countries


def test_provider_edit_of_eu_changes_no_active_rule_until_the_tenant_repins(fleet, us_site):
    rule = active_rule(fleet, "residency", allowed=["EU"])
    assert rule["pinned_groups"]["EU"]["version"] == 1
    assert "US" not in rule["pinned_groups"]["EU"]["countries"]

    call_command("revise_group", "EU", *eu().countries, "US")  # the provider's path
    assert eu().version == 2 and "US" in eu().countries
    assert [v.version for v in eu().versions.order_by("version")] == [1, 2]

    # the change is in the affected tenant's audit log, and not in an unaffected tenant's
    event = AuditEvent.objects.get(
        tenant_id=fleet.alpha.pk,
        object_type="sovereignty.jurisdictiongroup",
        object_id=str(eu().pk),
    )
    assert event.before["version"] == 1 and event.after["version"] == 2
    assert "US" in event.after["countries"] and "US" not in event.before["countries"]
    assert event.after["active_rules_pinned_to_older_version"] == [rule["id"]]
    assert not AuditEvent.objects.filter(
        tenant_id=fleet.beta.pk, object_type="sovereignty.jurisdictiongroup"
    ).exists()

    # the active rule still means EU as it pinned it: a US placement is still denied
    denied = place(fleet, us_site)
    assert denied.status_code == 403, denied.content
    assert denied.json()["code"] == "sovereignty_denied"

    # the tenant takes the new definition by re-activating the rule
    admin = fleet.client("alpha_admin")
    repinned = admin.post(f"{RULES}{rule['id']}/repin/", {}, format="json")
    assert repinned.status_code == 200, repinned.content
    assert repinned.json()["pinned_groups"]["EU"]["version"] == 2
    assert place(fleet, us_site).status_code == 201


def test_a_new_draft_superseding_the_rule_pins_the_current_version(fleet, us_site):
    rule = active_rule(fleet, "residency", allowed=["EU"])
    services.revise_group(eu(), [*eu().countries, "US"], CTX)
    admin = fleet.client("alpha_admin")
    v2 = admin.post(
        RULES,
        {
            "tenant": fleet.alpha.pk,
            "name": "residency",
            "kind": "residency",
            "params": {"allowed": ["EU"]},
            "supersedes": rule["id"],
        },
        format="json",
    ).json()
    assert place(fleet, us_site).status_code == 403  # v1 of the rule, EU v1, still enforced
    active = admin.post(f"{RULES}{v2['id']}/activate/", {}, format="json")
    assert active.status_code == 200, active.content
    assert active.json()["pinned_groups"]["EU"]["version"] == 2
    assert SovereigntyRule.objects.get(pk=rule["id"]).status == "retired"
    assert place(fleet, us_site).status_code == 201


def test_a_tenant_group_is_edited_by_a_new_version(fleet, us_site):
    admin = fleet.client("alpha_admin")
    group = admin.post(
        GROUPS,
        {"tenant": fleet.alpha.pk, "code": "DACH", "name": "DACH", "countries": ["DE", "AT", "CH"]},
        format="json",
    ).json()
    assert group["version"] == 1
    rule = active_rule(fleet, "residency", allowed=["DACH"])
    assert rule["pinned_groups"]["DACH"] == {
        "group": group["id"],
        "version": 1,
        "builtin": False,
        "countries": ["AT", "CH", "DE"],
    }
    patched = admin.patch(
        f"{GROUPS}{group['id']}/", {"countries": ["DE", "AT", "CH", "US"]}, format="json"
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["version"] == 2
    versions = admin.get(f"{GROUPS}{group['id']}/versions/")
    assert versions.status_code == 200
    assert [(v["version"], v["countries"]) for v in versions.json()] == [
        (1, ["AT", "CH", "DE"]),
        (2, ["AT", "CH", "DE", "US"]),
    ]
    assert_conforms(versions)
    update = AuditEvent.objects.filter(
        tenant_id=fleet.alpha.pk,
        object_type="sovereignty.jurisdictiongroup",
        object_id=str(group["id"]),
        action="update",
    ).get()
    assert update.before["version"] == 1 and update.after["version"] == 2
    # the code is what rules name: it never changes; the rule keeps v1 until re-activated
    renamed = admin.patch(f"{GROUPS}{group['id']}/", {"code": "DACHS"}, format="json")
    assert renamed.status_code == 400 and renamed.json()["errors"][0]["field"] == "code"
    assert place(fleet, us_site).status_code == 403
    assert admin.post(f"{RULES}{rule['id']}/repin/").status_code == 200
    assert place(fleet, us_site).status_code == 201
    # a group an active rule names is not deleted
    gone = admin.delete(f"{GROUPS}{group['id']}/")
    assert gone.status_code == 409 and gone.json()["code"] == "group_in_use"


def test_group_versions_are_immutable(fleet):
    v1 = JurisdictionGroupVersion.objects.get(group=eu(), version=1)
    v1.countries = ["US"]
    with pytest.raises(AppendOnly):
        v1.save()
    with pytest.raises(AppendOnly):
        v1.delete()
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE sovereignty_jurisdictiongroupversion SET countries = '[\"US\"]'")
    assert "US" not in JurisdictionGroupVersion.objects.get(group=eu(), version=1).countries


def test_groups_expand_in_personnel_rules(fleet):
    rule = active_rule(fleet, "personnel", nationalities=["EU"], residencies=["EEA"])
    assert set(rule["pinned_groups"]) == {"EU", "EEA"}
    policies = services.active_policies(fleet.alpha.pk)
    site = services.site_facts(fleet.sites["alpha"])

    def access(nationality, residency):
        person = PersonFacts("p", nationality, residency, "secret")
        return cedar.evaluate(
            policies,
            Request(Action.ACCESS_SITE, person, site, from_country="DE", approved=True),
        )

    assert access("FR", "NO").allowed  # a French national living in Norway (EEA)
    assert access("US", "NO").allowed  # residency in the EEA is enough
    assert access("NO", "US").allowed is False  # Norway is in the EEA, not the EU
    assert access("US", "US").allowed is False
    assert access("US", "US").rule_ids == (f"rule-{rule['id']}",)


def test_active_and_retired_rules_are_not_deleted(fleet):
    admin = fleet.client("alpha_admin")
    rule = active_rule(fleet, "customer_approval")
    refused = admin.delete(f"{RULES}{rule['id']}/")
    assert refused.status_code == 409, refused.content
    body = refused.json()
    assert body["code"] == "rule_active" and "retire it" in body["message"]
    assert admin.post(f"{RULES}{rule['id']}/retire/").status_code == 200
    retired = admin.delete(f"{RULES}{rule['id']}/")
    assert retired.status_code == 409 and retired.json()["code"] == "rule_retired"
    assert SovereigntyRule.objects.filter(pk=rule["id"]).exists()
    pending = draft(fleet, "customer_approval")
    assert admin.delete(f"{RULES}{pending['id']}/").status_code == 204
    assert not SovereigntyRule.objects.filter(pk=pending["id"]).exists()


def test_activation_needs_confirmation_when_it_would_deny_what_exists(fleet, us_site):
    assert place(fleet, us_site).status_code == 201
    asset = ProtectedAsset.objects.get(tenant=fleet.alpha, name="m")
    rule = draft(fleet, "residency", allowed=["EU"])
    admin = fleet.client("alpha_admin")
    url = f"{RULES}{rule['id']}/activate/"
    refused = admin.post(url, {}, format="json")
    assert refused.status_code == 409, refused.content
    body = refused.json()
    assert body["code"] == "confirmation_required"
    assert [(d["type"], d["id"]) for d in body["would_deny"]] == [("asset", str(asset.pk))]
    assert_conforms(refused, "POST")
    assert SovereigntyRule.objects.get(pk=rule["id"]).status == "draft"

    confirmed = admin.post(url, {"confirm": True}, format="json")
    assert confirmed.status_code == 200, confirmed.content
    stored = confirmed.json()["activation_what_if"]
    assert stored["confirmed"] is True
    assert [d["id"] for d in stored["would_deny"]] == [str(asset.pk)]
    assert_conforms(confirmed, "POST")
    event = AuditEvent.objects.filter(
        tenant_id=fleet.alpha.pk,
        object_type="sovereignty.sovereigntyrule",
        object_id=str(rule["id"]),
    ).latest("id")
    assert event.after["status"] == "active"
    assert event.after["activation_what_if"]["would_deny"][0]["id"] == str(asset.pk)


def test_activation_that_denies_nothing_needs_no_confirmation(fleet):
    rule = active_rule(fleet, "residency", allowed=["DE"])
    assert rule["activation_what_if"]["would_deny"] == []
    assert rule["activation_what_if"]["confirmed"] is False


def test_a_group_no_rule_names_is_deleted_with_its_versions(fleet):
    admin = fleet.client("alpha_admin")
    group = admin.post(
        GROUPS,
        {"tenant": fleet.alpha.pk, "code": "BALTIC", "name": "B", "countries": ["EE", "LV"]},
        format="json",
    ).json()
    assert admin.patch(f"{GROUPS}{group['id']}/", {"countries": ["EE", "LV", "LT"]}).status_code
    assert JurisdictionGroupVersion.objects.filter(group_id=group["id"]).count() == 2
    assert admin.delete(f"{GROUPS}{group['id']}/").status_code == 204
    assert not JurisdictionGroupVersion.objects.filter(group_id=group["id"]).exists()


def test_revise_group_refuses_what_is_not_a_country(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("revise_group", "EU", "DE", "Germany")
    with pytest.raises(CommandError):
        call_command("revise_group", "NOPE", "DE")
    assert eu().version == 1


# --- Legal bases pin their destination (review fix, R1) ----------------------------------------

BASES = "/api/v1/sovereignty/transfer-bases/"


def test_a_basis_pins_its_groups_countries_and_a_revision_changes_no_transfer(fleet, us_site):
    """A basis for "EU" covers the EU as it was when recorded; the provider adding US to EU
    does not silently permit FR -> US, and is recorded in the basis owner's log."""
    admin = fleet.client("alpha_admin")
    active_rule(fleet, "transfer", asset_kinds=["model"], allowed=["FR"], legal_bases=["scc"])
    basis = admin.post(
        BASES,
        {"tenant": fleet.alpha.pk, "kind": "scc", "destination": "EU", "reference": "SCC"},
        format="json",
    )
    assert basis.status_code == 201, basis.content
    fr_site = save_object(
        Site(
            tenant=fleet.alpha,
            code="ALPFR",
            name="Alpha FR",
            country="FR",
            time_zone="Europe/Paris",
            contracted_power_kw=Decimal(100),
            contracted_cooling_kw=Decimal(100),
            status="active",
        ),
        CTX,
    )
    created = place(fleet, fr_site)
    assert created.status_code == 201, created.content
    asset = created.json()["id"]
    services.revise_group(eu(), [*eu().countries, "US"], CTX)
    moved = fleet.client("alpha_operator").patch(
        f"{ASSETS}{asset}/", {"site": us_site.pk}, format="json"
    )
    assert moved.status_code == 403, moved.content
    logged = AuditEvent.objects.filter(tenant_id=fleet.alpha.pk, object_id=str(eu().pk))
    assert logged.exists()  # the basis owner is told its basis's group changed


def test_a_basis_names_a_known_place(fleet):
    bad = fleet.client("alpha_admin").post(
        BASES,
        {"tenant": fleet.alpha.pk, "kind": "scc", "destination": "NOPE", "reference": "SCC"},
        format="json",
    )
    assert bad.status_code == 400, bad.content
    assert "destination" in str(bad.json())


def test_the_provider_never_writes_a_tenants_own_group(fleet):
    """A tenant's group is part of its boundary: the provider may neither create, change nor
    delete one through the API (403 ``role``), and nothing changes."""
    admin = fleet.client("alpha_admin")
    created = admin.post(
        GROUPS,
        {"tenant": fleet.alpha.pk, "code": "DACH", "name": "DACH", "countries": ["DE", "AT"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    group = JurisdictionGroup.objects.get(pk=created.json()["id"])
    provider = fleet.client("provider_admin")
    patched = provider.patch(f"{GROUPS}{group.pk}/", {"countries": ["DE", "US"]}, format="json")
    assert patched.status_code == 403 and patched.json()["code"] == "role", patched.content
    deleted = provider.delete(f"{GROUPS}{group.pk}/")
    assert deleted.status_code == 403 and deleted.json()["code"] == "role", deleted.content
    posted = provider.post(
        GROUPS,
        {"tenant": fleet.alpha.pk, "code": "WIDE", "name": "Wide", "countries": ["US"]},
        format="json",
    )
    assert posted.status_code == 403 and posted.json()["code"] == "role", posted.content
    group.refresh_from_db()
    assert group.countries == ["AT", "DE"] or sorted(group.countries) == ["AT", "DE"]
    assert group.version == 1
    assert not JurisdictionGroup.objects.filter(code="WIDE").exists()
