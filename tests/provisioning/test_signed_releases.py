"""Signed firmware (issue 14): a release's detached Ed25519 signature over its digest is
verified against the trust roots at upgrade (and deploy) creation; an unsigned, wrongly signed,
unknown-root or revoked-root release is refused before any server is touched."""

from __future__ import annotations

import pytest

from factory.agents.models import AgentCommand
from factory.wire import CommandParam
from provisioning import services
from provisioning.models import FirmwareRelease, Workflow
from tenants.events.models import Event
from tenants.models import AuditEvent
from tenants.sovereignty.core.model import OWN_ROOTS
from tenants.sovereignty.models import DecisionRecord, SovereigntyRule, TrustRoot
from tenants.sovereignty.services import SovereigntyDenied, activate_rule, revoke_trust_root
from tests.support.fleet import CTX
from tests.support.signing import RELEASE_KEY, new_key, pem_of, sign_release, trust
from tests.support.sovereignty import RULES

pytestmark = pytest.mark.django_db
ORIGIN = "https://firmware.provider.example"
ROOTS = "/api/v1/sovereignty/trust-roots/"


def require_signature(fleet, **params) -> SovereigntyRule:
    rule = SovereigntyRule.objects.create(
        tenant=fleet.alpha,
        name="signed firmware only",
        kind="artifact_provenance",
        params={"origins": [ORIGIN], "require_signature": True, **params},
    )
    return activate_rule(rule, CTX)


def upgrade(servers, version="2.0"):
    return services.create_workflow(
        "upgrade", servers, CTX, spec={"firmware_version": version, "canary_size": 0}
    )


def refused(servers, version="2.0") -> SovereigntyDenied:
    with pytest.raises(SovereigntyDenied) as denied:
        upgrade(servers, version)
    assert not Workflow.objects.exists()
    assert not AgentCommand.objects.exists()
    assert DecisionRecord.objects.filter(action="accept_artifact", allowed=False).exists()
    return denied.value


def test_a_release_signed_by_a_provider_root_is_allowed_and_its_digest_sent(
    fleet, releases, in_service
):
    require_signature(fleet)
    workflow, _ = upgrade(in_service[:1])
    digest = releases["2.0"].sha256
    assert workflow.spec["firmware_sha256"] == {str(in_service[0].model_id): digest}
    record = DecisionRecord.objects.get(action="accept_artifact")
    assert record.allowed
    # the flash command carries the signed digest for the agent to check
    from provisioning.workflows.upgrade import UpgradeFlash

    run = type("Run", (), {"spec": workflow.spec, "server": in_service[0]})()
    assert UpgradeFlash().params(run)[CommandParam.DIGEST] == digest


def test_an_unsigned_release_is_refused(fleet, releases, in_service):
    require_signature(fleet)
    FirmwareRelease.objects.filter(pk=releases["2.0"].pk).update(sha256="", signature="", key_id="")
    denied = refused(in_service[:1])
    assert denied.decision.rule_ids


def test_a_signature_over_another_image_is_refused(fleet, releases, in_service):
    require_signature(fleet)
    release = releases["2.0"]
    good = release.signature
    sign_release(release, RELEASE_KEY, image=b"another image")
    FirmwareRelease.objects.filter(pk=release.pk).update(signature=good)  # digest swapped
    refused(in_service[:1])


def test_a_release_signed_by_an_unknown_key_is_refused(fleet, releases, in_service):
    require_signature(fleet)
    sign_release(releases["2.0"], new_key())  # nobody registered this key
    refused(in_service[:1])


def test_a_root_for_another_origin_does_not_vouch(fleet, releases, in_service):
    require_signature(fleet)
    stranger = new_key()
    trust(stranger, "https://elsewhere.example", name="elsewhere")
    sign_release(releases["2.0"], stranger)
    refused(in_service[:1])


def test_a_revoked_root_no_longer_verifies_and_is_kept(fleet, releases, in_service):
    require_signature(fleet)
    root = TrustRoot.objects.get(name="provider-release")
    revoke_trust_root(root, CTX, "key leaked")
    refused(in_service[:1])
    root.refresh_from_db()
    assert root.revoked and root.revoked_reason == "key leaked"


def test_another_tenants_root_does_not_vouch_but_ones_own_does(fleet, releases, in_service):
    require_signature(fleet)
    theirs = new_key()
    trust(theirs, ORIGIN, tenant=fleet.beta, name="beta-key")
    sign_release(releases["2.0"], theirs)
    refused(in_service[:1])
    trust(theirs, ORIGIN, tenant=fleet.alpha, name="alpha-key")
    workflow, _ = upgrade(in_service[:1])
    assert workflow.pk


def test_a_rule_naming_its_roots_accepts_only_those(fleet, releases, in_service):
    """The provider's root verifies the release, but the rule trusts the tenant's root only."""
    own = new_key()
    trust(own, ORIGIN, tenant=fleet.alpha, name="own")
    require_signature(fleet, trust_roots=["tenant:own"])
    refused(in_service[:1])
    sign_release(releases["2.0"], own)
    workflow, _ = upgrade(in_service[:1])
    assert workflow.spec["firmware_sha256"][str(in_service[0].model_id)] == releases["2.0"].sha256


def test_release_provenance_fields_are_validated(fleet, releases):
    from django.core.exceptions import ValidationError

    release = releases["2.0"]
    for field, value in (("sha256", "ABC"), ("signature", "not base64!"), ("key_id", "xyz")):
        bad = FirmwareRelease.objects.get(pk=release.pk)
        setattr(bad, field, value)
        with pytest.raises(ValidationError) as error:
            bad.full_clean()
        assert field in error.value.message_dict
    half = FirmwareRelease.objects.get(pk=release.pk)
    half.key_id = ""
    with pytest.raises(ValidationError) as error:
        half.full_clean()
    assert "key_id" in error.value.message_dict


def test_the_api_answers_a_refused_release_with_a_403_naming_the_rule(fleet, releases, in_service):
    rule = require_signature(fleet)
    sign_release(releases["2.0"], new_key())
    client = fleet.client("provider_admin")
    response = client.post(
        "/api/v1/workflows/",
        {
            "kind": "upgrade",
            "targets": {"ultraservers": [in_service[0].pk]},
            "spec": {"firmware_version": "2.0"},
        },
        format="json",
    )
    assert response.status_code == 403, response.content
    body = response.json()
    assert body["code"] == "sovereignty_denied"
    assert [e["message"].split(":")[0] for e in body["errors"]] == [f"rule-{rule.pk}"]
    assert not Workflow.objects.exists() and not AgentCommand.objects.exists()
    # nor can the caller hand over a digest of its own
    response = client.post(
        "/api/v1/workflows/",
        {
            "kind": "upgrade",
            "targets": {"ultraservers": [in_service[0].pk]},
            "spec": {"firmware_version": "2.0", "firmware_sha256": {"1": "ab" * 32}},
        },
        format="json",
    )
    assert response.status_code == 400
    assert "spec.firmware_sha256" in [e["field"] for e in response.json()["errors"]]


def test_each_model_is_flashed_from_its_own_origin_with_its_own_digest(fleet, releases, in_service):
    """One version, two models from two origins: each server's flash names its model's image."""
    from factory.catalog.models import UltraServerModel
    from provisioning.workflows.upgrade import UpgradeFlash
    from tests.support.fleet import make_rack, make_server
    from tests.support.workflows import put_in_service

    other_origin, other_key = "https://other-vendor.example", new_key()
    trust(other_key, other_origin, name="other-vendor")
    trn2 = UltraServerModel.objects.get(slug="trn2-ultraserver")
    trn2_release = sign_release(
        FirmwareRelease.objects.create(model=trn2, version="2.0", origin=other_origin), other_key
    )
    rack = make_rack(
        fleet.sites["alpha"], "ALP1-R88", cooling="air", cooling_kw="500", amperage=800
    )
    trn2_server = put_in_service(make_server("TRN2-1", "trn2-ultraserver", rack=rack))
    workflow, _ = upgrade([in_service[0], trn2_server])
    for server, release in ((in_service[0], releases["2.0"]), (trn2_server, trn2_release)):
        run = type("Run", (), {"spec": workflow.spec, "server": server})()
        params = UpgradeFlash().params(run)
        assert params[CommandParam.ORIGIN] == release.origin
        assert params[CommandParam.DIGEST] == release.sha256


def test_a_provider_root_registered_after_activation_reaches_the_rule_only_on_reactivation(
    fleet, releases, in_service
):
    """A rule that trusts "any root" pinned the provider's roots in force when the tenant
    activated it: a key the provider registers later signs nothing for it (the provider cannot
    widen the customer's boundary) until the tenant re-activates; the registration is in the
    tenant's audit log, naming the rule it would reach."""
    rule = require_signature(fleet)
    assert rule.pinned_roots == ["provider:provider-release", OWN_ROOTS]
    later = new_key()
    created = fleet.client("provider_admin").post(
        ROOTS,
        {"tenant": None, "name": "late-key", "origin": ORIGIN, "public_key": pem_of(later)},
        format="json",
    )
    assert created.status_code == 201, created.content
    sign_release(releases["2.0"], later)
    refused(in_service[:1])

    event = AuditEvent.objects.get(
        tenant_id=fleet.alpha.pk, object_type="sovereignty.trustroot", action="create"
    )
    assert event.after["name"] == "late-key"
    assert event.after["reaches_on_reactivation"] == [rule.pk]
    assert not AuditEvent.objects.filter(  # beta has no provenance rule: not affected
        tenant_id=fleet.beta.pk, object_type="sovereignty.trustroot"
    ).exists()
    # And the tenant is told at once (events API, webhooks), not only on record.
    (told,) = Event.objects.filter(kind="trust_root.registered")
    assert told.tenant_id == fleet.alpha.pk
    assert told.data["root"] == "provider:late-key" and told.data["origin"] == ORIGIN
    assert told.data["reaches_on_reactivation"] == [rule.pk]

    repinned = fleet.client("alpha_admin").post(f"{RULES}{rule.pk}/repin/", format="json")
    assert repinned.status_code == 200, repinned.content
    assert "provider:late-key" in repinned.json()["pinned_roots"]
    workflow, _ = upgrade(in_service[:1])
    assert workflow.pk


def test_a_provider_roots_revocation_is_in_the_affected_tenants_log(fleet, releases, in_service):
    require_signature(fleet)
    root = TrustRoot.objects.get(name="provider-release")
    revoke_trust_root(root, CTX, "key compromised")
    event = AuditEvent.objects.get(
        tenant_id=fleet.alpha.pk, object_type="sovereignty.trustroot", action="update"
    )
    assert event.before["revoked_at"] is None and event.after["revoked_at"]
    (told,) = Event.objects.filter(kind="trust_root.revoked")
    assert told.tenant_id == fleet.alpha.pk and told.data["reason"] == "key compromised"
    refused(in_service[:1])


def test_a_rule_active_before_roots_were_pinned_is_pinned_by_the_migration(fleet, releases):
    """Migration 0014 pins an already-active rule to the provider roots unrevoked then (and the
    tenant's own), so an upgrade changes nothing it allowed."""
    from importlib import import_module

    from django.apps import apps

    rule = require_signature(fleet)
    SovereigntyRule.objects.filter(pk=rule.pk).update(pinned_roots=[])
    revoked = trust(new_key(), ORIGIN, name="old-key")
    revoke_trust_root(revoked, CTX)
    import_module("tenants.sovereignty.migrations.0014_rule_pinned_roots").pin_active_rules(
        apps, None
    )
    rule.refresh_from_db()
    assert rule.pinned_roots == ["provider:provider-release", OWN_ROOTS]
