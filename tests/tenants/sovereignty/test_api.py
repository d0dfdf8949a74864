"""Sovereignty through the API and the enforcement services, on real PostgreSQL."""

import datetime as dt

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from tenants.models.audit import AppendOnlyError
from tenants.services.changes import save_object
from tenants.sovereignty import services
from tenants.sovereignty.core.model import ArtifactFacts
from tenants.sovereignty.models import DecisionRecord, ProtectedAsset
from tests.support.fleet import CTX
from tests.support.signing import new_key, trust
from tests.support.sovereignty import RULES, active_rule

ASSETS = "/api/v1/sovereignty/assets/"


def test_rule_lifecycle_and_roles(fleet):
    admin = fleet.client("alpha_admin")
    draft = admin.post(
        RULES,
        {
            "tenant": fleet.alpha.pk,
            "name": "EU data",
            "kind": "residency",
            "params": {"asset_kinds": ["dataset"], "allowed": ["EU"]},
        },
        format="json",
    )
    assert draft.status_code == 201, draft.content
    body = draft.json()
    assert body["status"] == "draft" and body["version"] == 1
    assert body["sentence"] == "Dataset assets may only be stored or processed in EU"
    bad = admin.post(
        RULES,
        {"tenant": fleet.alpha.pk, "name": "x", "kind": "residency", "params": {"allowed": []}},
        format="json",
    )
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "params"
    assert "params.allowed" in bad.json()["errors"][0]["message"]
    # Operators and provider admins read rules; only tenant-admins write them.
    assert fleet.client("alpha_operator").get(f"{RULES}{body['id']}/").status_code == 200
    assert fleet.client("provider_admin").get(f"{RULES}{body['id']}/").status_code == 200
    assert (
        fleet.client("provider_admin").patch(f"{RULES}{body['id']}/", {"name": "y"}).status_code
        == 403
    )
    assert fleet.client("alpha_operator").post(f"{RULES}{body['id']}/activate/").status_code == 403
    assert fleet.client("beta_admin").get(f"{RULES}{body['id']}/").status_code == 404
    assert fleet.client("technician").get(RULES).status_code == 403
    active = admin.post(f"{RULES}{body['id']}/activate/").json()
    assert active["status"] == "active" and active["activated_at"]
    frozen = admin.patch(f"{RULES}{body['id']}/", {"params": {"allowed": ["DE"]}}, format="json")
    assert frozen.status_code == 400 and frozen.json()["errors"][0]["code"] == "rule_frozen"
    again = admin.post(f"{RULES}{body['id']}/activate/")
    assert again.status_code == 400 and again.json()["errors"][0]["code"] == "not_a_draft"
    # A change is a new draft that supersedes; activating it retires the old version.
    v2 = admin.post(
        RULES,
        {
            "tenant": fleet.alpha.pk,
            "name": "EU data",
            "kind": "residency",
            "params": {"allowed": ["DE"]},
            "supersedes": body["id"],
        },
        format="json",
    ).json()
    assert v2["version"] == 2
    admin.post(f"{RULES}{v2['id']}/activate/")
    assert admin.get(f"{RULES}{body['id']}/").json()["status"] == "retired"


def test_asset_placement_is_enforced_and_a_denial_changes_nothing(fleet, us_site):
    rule = active_rule(fleet, "residency", asset_kinds=["dataset"], labels=["pii"], allowed=["EU"])
    operator = fleet.client("alpha_operator")
    created = operator.post(
        ASSETS,
        {
            "tenant": fleet.alpha.pk,
            "name": "patients",
            "kind": "dataset",
            "classification": "confidential",
            "labels": ["pii"],
            "site": fleet.sites["alpha"].pk,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    asset_id = created.json()["id"]
    moved = operator.patch(f"{ASSETS}{asset_id}/", {"site": us_site.pk}, format="json")
    assert moved.status_code == 403
    body = moved.json()
    assert body["code"] == "sovereignty_denied"
    assert body["errors"][0]["message"].startswith(f"{rule['cedar_id']}: residency: Dataset assets")
    assert ProtectedAsset.objects.get(pk=asset_id).site_id == fleet.sites["alpha"].pk
    log = operator.get("/api/v1/sovereignty/decisions/?resource_type=asset").json()["results"]
    # The move DE -> US is a placement (denied) and a transfer (no transfer rule: allowed).
    assert [(d["action"], d["allowed"]) for d in log] == [
        ("transfer_asset", True),
        ("place_asset", False),
        ("place_asset", True),
    ]
    assert log[1]["rule_ids"] == [rule["cedar_id"]] and log[1]["actor_username"] == "alpha-operator"
    assert fleet.client("beta_admin").get("/api/v1/sovereignty/decisions/").json()["count"] == 0
    assert fleet.client("beta_admin").get(f"{ASSETS}{asset_id}/").status_code == 404
    # Without the label the rule does not apply.
    plain = operator.post(
        ASSETS,
        {
            "tenant": fleet.alpha.pk,
            "name": "weather",
            "kind": "dataset",
            "classification": "public",
            "site": us_site.pk,
        },
        format="json",
    )
    assert plain.status_code == 201


def test_tenant_defined_group(fleet):
    admin = fleet.client("alpha_admin")
    group = admin.post(
        "/api/v1/sovereignty/groups/",
        {"tenant": fleet.alpha.pk, "code": "DACH", "name": "DACH", "countries": ["DE", "AT", "CH"]},
        format="json",
    )
    assert group.status_code == 201, group.content
    assert (
        admin.post(
            "/api/v1/sovereignty/groups/",
            {"tenant": fleet.alpha.pk, "code": "X", "name": "x", "countries": ["ZZ"]},
            format="json",
        ).status_code
        == 400
    )
    codes = {g["code"] for g in admin.get("/api/v1/sovereignty/groups/").json()["results"]}
    assert {"EU", "EEA", "DACH"} <= codes
    assert "DACH" not in {
        g["code"]
        for g in fleet.client("beta_admin").get("/api/v1/sovereignty/groups/").json()["results"]
    }
    active_rule(fleet, "residency", allowed=["DACH"])
    placed = fleet.client("alpha_operator").post(
        ASSETS,
        {
            "tenant": fleet.alpha.pk,
            "name": "m",
            "kind": "model",
            "classification": "internal",
            "site": fleet.sites["alpha"].pk,
        },
        format="json",
    )
    assert placed.status_code == 201, placed.content


def test_lockbox_access_request_and_technician_dispatch(fleet):
    active_rule(fleet, "personnel", nationalities=["DE"], min_clearance="secret", in_country=True)
    active_rule(fleet, "customer_approval")
    tech, site = fleet.people["technician"], fleet.sites["alpha"]
    with pytest.raises(services.SovereigntyDenied) as denied:
        services.check_site_access(tech, site, CTX, from_country="DE")
    assert len(denied.value.decision.rule_ids) == 1  # only the approval is missing
    now = timezone.now()
    provider = fleet.client("provider_admin")
    request = provider.post(
        "/api/v1/sovereignty/access-requests/",
        {
            "site": site.pk,
            "person": tech.pk,
            "reason": "replace CDU pump",
            "starts_at": (now - dt.timedelta(minutes=5)).isoformat(),
            "ends_at": (now + dt.timedelta(hours=4)).isoformat(),
        },
        format="json",
    )
    assert request.status_code == 201, request.content
    rid = request.json()["id"]
    assert (
        fleet.client("alpha_viewer")
        .post(f"/api/v1/sovereignty/access-requests/{rid}/approve/")
        .status_code
        == 403
    )
    assert (
        fleet.client("beta_admin")
        .post(f"/api/v1/sovereignty/access-requests/{rid}/approve/")
        .status_code
        == 404
    )
    assert (
        fleet.client("alpha_admin")
        .post(f"/api/v1/sovereignty/access-requests/{rid}/approve/")
        .json()["status"]
        == "approved"
    )
    assert services.check_site_access(tech, site, CTX, from_country="DE").allowed
    # Still no remote access, approval or not, when the site is air-gapped.
    site.air_gapped = True
    save_object(site, CTX)
    with pytest.raises(services.SovereigntyDenied):
        services.check_site_access(tech, site, CTX, from_country="DE", remote=True)
    evaluated = (
        fleet.client("alpha_viewer")
        .post(
            "/api/v1/sovereignty/evaluate/",
            {"action": "access_site", "site": site.pk, "person": tech.pk, "from_country": "FR"},
            format="json",
        )
        .json()
    )
    # In FR the personnel rule denies, and (the lockbox, issue 14) the grant does not cover a
    # person outside the site's country under the default policy: the approval is missing too.
    assert evaluated["allowed"] is False and len(evaluated["rule_ids"]) == 2


def test_evaluate_validates_and_fails_closed(fleet):
    client = fleet.client("alpha_viewer")
    site = fleet.sites["alpha"]
    missing = client.post(
        "/api/v1/sovereignty/evaluate/", {"action": "place_asset", "site": site.pk}, format="json"
    )
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "asset"
    other = client.post(
        "/api/v1/sovereignty/evaluate/",
        {
            "action": "access_site",
            "site": fleet.sites["beta"].pk,
            "person": fleet.people["technician"].pk,
        },
        format="json",
    )
    assert other.status_code == 400 and other.json()["errors"][0]["field"] == "site"
    from tenants.choices import Role
    from tests.support.fleet import make_person

    nobody = make_person("new-tech", Role.PROVIDER_TECHNICIAN)  # no nationality on record
    decision = client.post(
        "/api/v1/sovereignty/evaluate/",
        {"action": "access_site", "site": site.pk, "person": nobody.pk},
        format="json",
    ).json()
    assert decision["allowed"] is False and "no nationality" in decision["reasons"][0]
    # A question is logged as one: nobody reading the log takes it for an access that happened.
    asked = DecisionRecord.objects.filter(principal=nobody.username).get()
    assert (asked.resource_type, asked.allowed) == ("question:site", False)
    listed = client.get("/api/v1/sovereignty/decisions/", {"resource_type": "question:site"})
    assert [d["principal"] for d in listed.json()["results"]] == [nobody.username]


def test_what_if_lists_what_a_draft_would_deny(fleet, us_site):
    services.save_asset(
        ProtectedAsset(
            tenant=fleet.alpha,
            name="genome",
            kind="dataset",
            classification="restricted",
            labels=["health"],
            site=fleet.sites["alpha"],
        ),
        CTX,
    )
    services.save_asset(
        ProtectedAsset(
            tenant=fleet.alpha,
            name="weather",
            kind="dataset",
            classification="public",
            site=us_site,
        ),
        CTX,
    )
    admin = fleet.client("alpha_admin")
    strict = admin.post(
        RULES,
        {
            "tenant": fleet.alpha.pk,
            "name": "FR only",
            "kind": "residency",
            "params": {"labels": ["health"], "allowed": ["FR"]},
        },
        format="json",
    ).json()
    result = admin.post(f"{RULES}{strict['id']}/what-if/").json()
    assert result["checked"] == 2
    assert [(d["repr"], d["action"]) for d in result["would_deny"]] == [("genome", "place_asset")]
    lenient = admin.post(
        RULES,
        {
            "tenant": fleet.alpha.pk,
            "name": "EU",
            "kind": "residency",
            "params": {"labels": ["health"], "allowed": ["EU"]},
        },
        format="json",
    ).json()
    assert admin.post(f"{RULES}{lenient['id']}/what-if/").json()["would_deny"] == []
    assert DecisionRecord.objects.filter(resource_repr="genome", action="place_asset").count() == 1


def test_workload_artifact_and_telemetry_enforcement(fleet, us_site):
    active_rule(fleet, "residency", asset_kinds=["model"], allowed=["DE"])
    trust(new_key(), "aws-neuron", name="x")  # in force at activation: the rule pins it
    active_rule(fleet, "artifact_provenance", origins=["aws-neuron"], require_signature=True)
    active_rule(fleet, "telemetry_egress", categories=["power", "thermal"], destinations=["EU"])
    data = services.save_asset(
        ProtectedAsset(
            tenant=fleet.alpha,
            name="corpus",
            kind="dataset",
            classification="internal",
            site=us_site,
        ),
        CTX,
    )
    model = services.save_asset(
        ProtectedAsset(
            tenant=fleet.alpha,
            name="weights",
            kind="model",
            classification="internal",
            site=fleet.sites["alpha"],
        ),
        CTX,
    )
    assert services.check_workload([data, model], fleet.sites["alpha"], CTX).allowed
    with pytest.raises(services.SovereigntyDenied) as denied:
        services.check_workload([data, model], us_site, CTX)
    assert denied.value.decision.reasons[0].startswith("weights:")
    site = fleet.sites["alpha"]
    # verified facts (services.check_release verifies a release's signature into these)
    assert services.check_artifact(
        site, ArtifactFacts("fw-2026.11", "aws-neuron", True, frozenset({"provider:x"})), CTX
    ).allowed
    with pytest.raises(services.SovereigntyDenied):
        services.check_artifact(site, ArtifactFacts("fw-x", "aws-neuron", False), CTX)
    assert services.allowed_telemetry(site, ["power", "utilization", "thermal"], site, CTX) == [
        "power",
        "thermal",
    ]
    assert services.allowed_telemetry(site, ["power"], us_site, CTX) == []


def test_decision_log_is_append_only(fleet):
    services.check_artifact(fleet.sites["alpha"], ArtifactFacts("a", "o", True), CTX)
    record = DecisionRecord.objects.get()
    with pytest.raises(AppendOnlyError):
        record.delete()
    with pytest.raises(AppendOnlyError):
        DecisionRecord.objects.update(allowed=False)
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE sovereignty_decisionrecord SET allowed = false")
    assert DecisionRecord.objects.get().allowed is True


def test_one_query_context_matches_the_orm_path(fleet, us_site):
    from django.test.utils import CaptureQueriesContext

    active_rule(fleet, "residency", allowed=["EU"])
    save_object(
        __import__("tenants.sovereignty.models", fromlist=["JurisdictionGroup"]).JurisdictionGroup(
            tenant=fleet.alpha, code="DACH", name="DACH", countries=["DE", "AT", "CH"]
        ),
        CTX,
    )
    asset = services.save_asset(
        ProtectedAsset(
            tenant=fleet.alpha,
            name="a",
            kind="model",
            classification="secret",
            labels=["x"],
            site=fleet.sites["alpha"],
        ),
        CTX,
    )
    site = fleet.sites["alpha"]
    services.decision_context(site.pk, asset.pk)  # warm the compiled-policy cache
    with CaptureQueriesContext(connection) as queries:
        fast = services.decision_context(site.pk, asset.pk)
    assert len(queries) == 1  # one round trip for every fact and the policy fingerprint
    slow = services.decision_context_orm(site.pk, asset.pk)
    assert (fast.site, fast.asset, fast.tenant_id) == (slow.site, slow.asset, slow.tenant_id)
    assert fast.policies is slow.policies  # same fingerprint, same cached compilation
    assert fast.site.jurisdictions == {"DE", "EU", "EEA", "DACH"}


def test_transfer_needs_a_legal_basis_on_record(fleet, us_site):
    from tenants.sovereignty.core.model import Action

    active_rule(fleet, "transfer", asset_kinds=["dataset"], allowed=["EEA"], legal_bases=["scc"])
    asset = services.save_asset(
        ProtectedAsset(
            tenant=fleet.alpha,
            name="claims",
            kind="dataset",
            classification="confidential",
            site=fleet.sites["alpha"],
        ),
        CTX,
    )
    with pytest.raises(services.SovereigntyDenied):
        services.check_asset_at_site(asset, us_site, CTX, action=Action.TRANSFER_ASSET)
    admin = fleet.client("alpha_admin")
    expired = admin.post(
        "/api/v1/sovereignty/transfer-bases/",
        {
            "tenant": fleet.alpha.pk,
            "kind": "scc",
            "destination": "US",
            "reference": "SCC 2021/914",
            "valid_until": "2020-01-01",
        },
        format="json",
    )
    assert expired.status_code == 201, expired.content
    with pytest.raises(services.SovereigntyDenied):
        services.check_asset_at_site(asset, us_site, CTX, action=Action.TRANSFER_ASSET)
    assert (
        fleet.client("alpha_operator")
        .post(
            "/api/v1/sovereignty/transfer-bases/",
            {"tenant": fleet.alpha.pk, "kind": "scc", "destination": "US", "reference": "x"},
            format="json",
        )
        .status_code
        == 403
    )
    admin.post(
        "/api/v1/sovereignty/transfer-bases/",
        {"tenant": fleet.alpha.pk, "kind": "scc", "destination": "US", "reference": "SCC 2021/914"},
        format="json",
    )
    assert services.check_asset_at_site(asset, us_site, CTX, action=Action.TRANSFER_ASSET).allowed
    # A basis of a kind the rule does not accept does not count.
    assert services.bases_on_record(fleet.alpha.pk, services.site_facts(us_site)) == {"scc"}
    assert (
        fleet.client("beta_admin").get("/api/v1/sovereignty/transfer-bases/").json()["count"] == 0
    )


def test_access_requests_are_tenant_scoped(fleet):
    now = timezone.now()
    created = fleet.client("provider_admin").post(
        "/api/v1/sovereignty/access-requests/",
        {
            "site": fleet.sites["alpha"].pk,
            "person": fleet.people["technician"].pk,
            "reason": "swap",
            "starts_at": now.isoformat(),
            "ends_at": (now + dt.timedelta(hours=1)).isoformat(),
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    rid = created.json()["id"]
    assert (
        fleet.client("alpha_viewer").get(f"/api/v1/sovereignty/access-requests/{rid}/").status_code
        == 200
    )
    assert (
        fleet.client("beta_admin").get(f"/api/v1/sovereignty/access-requests/{rid}/").status_code
        == 404
    )
    assert (
        fleet.client("beta_admin").get("/api/v1/sovereignty/access-requests/").json()["count"] == 0
    )
    # Tenants do not file requests for provider access; and windows are bounded.
    assert (
        fleet.client("alpha_admin")
        .post(
            "/api/v1/sovereignty/access-requests/",
            {
                "site": fleet.sites["alpha"].pk,
                "person": fleet.people["technician"].pk,
                "reason": "x",
                "starts_at": now.isoformat(),
                "ends_at": (now + dt.timedelta(hours=1)).isoformat(),
            },
            format="json",
        )
        .status_code
        == 403
    )
    too_long = fleet.client("provider_admin").post(
        "/api/v1/sovereignty/access-requests/",
        {
            "site": fleet.sites["alpha"].pk,
            "person": fleet.people["technician"].pk,
            "reason": "x",
            "starts_at": now.isoformat(),
            "ends_at": (now + dt.timedelta(days=30)).isoformat(),
        },
        format="json",
    )
    assert too_long.status_code == 400 and too_long.json()["errors"][0]["field"] == "ends_at"


def test_evaluate_cannot_probe_other_tenants_people(fleet):
    probe = fleet.client("alpha_admin").post(
        "/api/v1/sovereignty/evaluate/",
        {
            "action": "access_site",
            "site": fleet.sites["alpha"].pk,
            "person": fleet.people["beta_admin"].pk,
        },
        format="json",
    )
    assert probe.status_code == 400 and probe.json()["errors"][0]["field"] == "person"


def test_a_rule_supersedes_only_its_own_tenants_rules(fleet):
    from tenants.choices import Role
    from tenants.models import Membership

    beta_rule = (
        fleet.client("beta_admin")
        .post(
            RULES,
            {"tenant": fleet.beta.pk, "name": "b", "kind": "customer_approval"},
            format="json",
        )
        .json()
    )
    both = fleet.people["alpha_admin"]
    save_object(Membership(user=both, tenant=fleet.beta, role=Role.TENANT_ADMIN), CTX)
    from tests.support.fleet import client_for

    response = client_for(both).post(
        RULES,
        {
            "tenant": fleet.alpha.pk,
            "name": "a",
            "kind": "customer_approval",
            "supersedes": beta_rule["id"],
        },
        format="json",
    )
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "supersedes"
