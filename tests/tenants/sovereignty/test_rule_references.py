"""A draft names only trust roots and key stores that exist for its tenant: an unknown name would
be accepted and then never match, so the rule would deny everything it covers, silently."""

from django.utils import timezone

from tenants.sovereignty.models import ExternalKeyStore, SovereigntyRule
from tests.support.signing import new_key, trust
from tests.support.sovereignty import RULES

ORIGIN = "https://releases.example"


def post_rule(fleet, who, kind, **params):
    if kind == "artifact_provenance":
        params = {"origins": [ORIGIN], "require_signature": True, **params}
    tenant = fleet.alpha if who.startswith("alpha") else fleet.beta
    return fleet.client(who).post(
        RULES, {"tenant": tenant.pk, "name": kind, "kind": kind, "params": params}, format="json"
    )


def refused_naming(response, field, code, value):
    assert response.status_code == 400, response.content
    (error,) = response.json()["errors"]
    assert (error["field"], error["code"]) == (field, code)
    assert repr(value) in error["message"]


def test_unknown_trust_roots_are_refused_naming_the_field_and_value(fleet):
    trust(new_key(), ORIGIN, name="vendor")
    trust(new_key(), ORIGIN, tenant=fleet.alpha, name="own")
    trust(new_key(), ORIGIN, tenant=fleet.beta, name="theirs")
    before = SovereigntyRule.objects.count()
    for ref in ("tenant:missing", "provider:own", "tenant:theirs", "vendor"):
        refused = post_rule(fleet, "alpha_admin", "artifact_provenance", trust_roots=[ref])
        refused_naming(refused, "params.trust_roots", "unknown_trust_root", ref)
    assert SovereigntyRule.objects.count() == before
    made = post_rule(
        fleet, "alpha_admin", "artifact_provenance", trust_roots=["provider:vendor", "tenant:own"]
    )
    assert made.status_code == 201, made.content


def test_a_revoked_trust_root_is_not_named_by_a_new_draft(fleet):
    root = trust(new_key(), ORIGIN, tenant=fleet.alpha, name="old")
    root.revoked_at = timezone.now()
    root.save()
    refused = post_rule(fleet, "alpha_admin", "artifact_provenance", trust_roots=["tenant:old"])
    refused_naming(refused, "params.trust_roots", "unknown_trust_root", "tenant:old")


def test_unknown_key_stores_are_refused_and_another_tenants_store_is_unknown(fleet):
    ExternalKeyStore.objects.create(
        tenant=fleet.beta, name="xks-beta", endpoint_url="https://xks.beta.example", country="US"
    )
    ExternalKeyStore.objects.create(
        tenant=fleet.alpha, name="xks-fra", endpoint_url="https://xks.alpha.example", country="DE"
    )
    for name in ("xks-nowhere", "xks-beta"):
        refused = post_rule(fleet, "alpha_admin", "key_custody", stores=["xks-fra", name])
        refused_naming(refused, "params.stores", "unknown_key_store", name)
    made = post_rule(fleet, "alpha_admin", "key_custody", stores=["xks-fra"])
    assert made.status_code == 201, made.content


def test_a_draft_edited_to_an_unknown_root_is_refused(fleet):
    trust(new_key(), ORIGIN, tenant=fleet.alpha, name="own")
    made = post_rule(fleet, "alpha_admin", "artifact_provenance", trust_roots=["tenant:own"])
    assert made.status_code == 201, made.content
    patched = fleet.client("alpha_admin").patch(
        f"{RULES}{made.json()['id']}/",
        {"params": {"origins": [ORIGIN], "trust_roots": ["tenant:typo"]}},
        format="json",
    )
    refused_naming(patched, "params.trust_roots", "unknown_trust_root", "tenant:typo")
