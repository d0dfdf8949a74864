"""Firmware and software delivered to a site: the provenance rules, checked cryptographically.

The engine is never told "signed: yes". The service verifies the release's detached Ed25519
signature (``core.signing``) against every unrevoked trust root in the tenant's scope (the
provider's and the tenant's own) for the release's origin and key id, and the Cedar request
carries what it found: whether any root verified it, and which.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from tenants.choices import AuditAction
from tenants.errors import Conflict
from tenants.events.kinds import EventKind
from tenants.events.services import emit
from tenants.services import audit
from tenants.services.changes import ChangeContext, save_object
from tenants.sovereignty.core import signing
from tenants.sovereignty.core.model import (
    OWN_ROOTS,
    Action,
    ArtifactFacts,
    Decision,
    Request,
    RuleKind,
)
from tenants.sovereignty.models.rules import RuleStatus, SovereigntyRule
from tenants.sovereignty.models.trust import TrustRoot
from tenants.sovereignty.services.decisions import SiteLike, Subject, decide, decision_context

if TYPE_CHECKING:
    from collections.abc import Iterable


class ReleaseLike(Protocol):
    """What a firmware release is to this check (provisioning's FirmwareRelease; tenants does not
    import it)."""

    version: str
    origin: str
    sha256: str
    signature: str
    key_id: str

    @property
    def model_slug(self) -> str: ...


def roots_in_scope(tenant_id: int | None, origin: str, key_id: str) -> Iterable[TrustRoot]:
    """The unrevoked roots that may vouch for ``origin``'s releases to this tenant."""
    return TrustRoot.objects.filter(
        Q(tenant__isnull=True) | Q(tenant_id=tenant_id),
        origin=origin,
        key_id=key_id,
        revoked_at__isnull=True,
    )


def release_facts(release: ReleaseLike, tenant_id: int | None, artifact_id: str) -> ArtifactFacts:
    """The verified facts of ``release`` for this tenant: no digest or signature, a malformed
    one, an unknown or revoked key, or a signature that does not verify are all unsigned."""
    roots: frozenset[str] = frozenset()
    if release.sha256 and release.signature and release.key_id:
        try:
            signed = signing.message(
                release.model_slug, release.version, release.origin, release.sha256
            )
        except ValueError:
            signed = b""
        if signed:
            verified = [
                root
                for root in roots_in_scope(tenant_id, release.origin, release.key_id)
                if signing.verify(root.public_key, release.signature, signed)
            ]
            own = {OWN_ROOTS} if any(r.tenant_id is not None for r in verified) else set()
            roots = frozenset({r.ref for r in verified} | own)
    return ArtifactFacts(artifact_id, release.origin, bool(roots), roots)


def check_release(site: SiteLike, release: ReleaseLike, ctx: ChangeContext) -> Decision:
    """A firmware release about to be delivered to ``site``: SovereigntyDenied unless the
    tenant's provenance rules allow it, with its signature verified here."""
    artifact_id = f"firmware:{release.version}"
    return check_artifact(site, release_facts(release, site.tenant_id, artifact_id), ctx)


def check_artifact(site: SiteLike, artifact: ArtifactFacts, ctx: ChangeContext) -> Decision:
    """Firmware or software about to be delivered to a site, its facts already verified."""
    context = decision_context(site.pk)
    request = Request(Action.ACCEPT_ARTIFACT, None, context.site, artifact=artifact)
    return decide(
        request,
        tenant_id=site.tenant_id,
        ctx=ctx,
        site_id=site.pk,
        subject=Subject("artifact", artifact.id[:64], f"{artifact.id} from {artifact.origin}"),
        policies=context.policies,
    )


def _rules_trusting(origin: str) -> list[SovereigntyRule]:
    """The active provenance rules, of every tenant, that cover ``origin``'s releases."""
    rules = SovereigntyRule.objects.filter(
        status=RuleStatus.ACTIVE, kind=RuleKind.ARTIFACT_PROVENANCE
    ).order_by("tenant_id", "pk")
    return [r for r in rules if origin in ((r.params or {}).get("origins") or [])]


def _audit_for_tenants(
    root: TrustRoot,
    before: dict[str, Any] | None,
    ctx: ChangeContext,
    action: AuditAction,
    note: Callable[[list[SovereigntyRule]], dict[str, Any]],
) -> None:
    """A provider root's change, in the log of each tenant whose active provenance rules cover
    its origin (the provider's own chain has it already): the party the rules constrain
    changed what may vouch for firmware, and the tenant's auditor sees it there."""
    if root.tenant_id is not None:
        return
    by_tenant: dict[int, list[SovereigntyRule]] = {}
    for rule in _rules_trusting(root.origin):
        by_tenant.setdefault(rule.tenant_id, []).append(rule)
    after = audit.snapshot(root)
    kind = (
        EventKind.TRUST_ROOT_REGISTERED
        if action == AuditAction.CREATE
        else EventKind.TRUST_ROOT_REVOKED
    )
    for tenant_id, rules in by_tenant.items():
        noted = note(rules)
        audit.record(
            actor=ctx.actor,
            action=action,
            instance=root,
            before=before,
            after={**after, **noted},
            source=ctx.source,
            request_id=ctx.request_id,
            tenant_id=tenant_id,
        )
        # Told at once, not only on record: the tenant decides whether to re-activate.
        extra = {"reason": root.revoked_reason} if kind == EventKind.TRUST_ROOT_REVOKED else {}
        emit(
            kind,
            root,
            tenant=tenant_id,
            name=root.ref,
            data={"root": root.ref, "origin": root.origin, "key_id": root.key_id, **noted, **extra},
        )


def register_trust_root(root: TrustRoot, ctx: ChangeContext) -> TrustRoot:
    """Register a new root. A provider's is audited into each tenant whose active provenance
    rules cover its origin: it reaches none of them as it is. A rule naming no ``trust_roots``
    pinned the roots in force at its activation, so a new provider key widens it only when the
    tenant re-activates it (``reaches_on_reactivation``); a rule naming roots takes only those."""

    def audit_tenants(saved: TrustRoot, creating: bool) -> None:
        def note(rules: list[SovereigntyRule]) -> dict[str, Any]:
            return {
                "rules_covering_origin": [r.pk for r in rules],
                "reaches_on_reactivation": [r.pk for r in rules if r.pins_roots],
            }

        if creating:
            _audit_for_tenants(saved, None, ctx, AuditAction.CREATE, note)

    return save_object(root, ctx, after_save=audit_tenants)


def revoke_trust_root(root: TrustRoot, ctx: ChangeContext, reason: str = "") -> TrustRoot:
    """Revoke ``root``: from now on it verifies nothing. Kept, with who revoked it and why, so
    past decisions stay explainable; a provider root's revocation is also in the log of each
    tenant whose provenance rules cover its origin. Revoking twice is a 409."""
    with transaction.atomic():
        locked = TrustRoot.objects.select_for_update().get(pk=root.pk)
        if locked.revoked_at is not None:
            raise Conflict(
                f"trust root {locked.ref} was revoked at {locked.revoked_at.isoformat()}",
                code="already_revoked",
                field="revoked_at",
            )
        before = audit.snapshot(locked)
        locked.revoked_at = timezone.now()
        locked.revoked_by = ctx.actor.username[:150]
        locked.revoked_reason = reason[:500]
        locked.save(update_fields=["revoked_at", "revoked_by", "revoked_reason"])
        audit.record_change(ctx, locked, before)
        _audit_for_tenants(
            locked,
            before,
            ctx,
            AuditAction.UPDATE,
            lambda rules: {"rules_covering_origin": [r.pk for r in rules]},
        )
    return locked
