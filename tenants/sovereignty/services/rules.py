"""A tenant's rules and groups: activation (with its what-if shown and recorded, and the group
versions it names pinned), retirement, deletion of drafts only, and group versions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from tenants.choices import AuditAction
from tenants.errors import Conflict, Denied, Invalid
from tenants.services import audit
from tenants.services.changes import ChangeContext, delete_object, save_object
from tenants.sovereignty.core import cedar
from tenants.sovereignty.core.model import (
    Action,
    Request,
    SiteFacts,
)
from tenants.sovereignty.models import (
    AccessRequest,
    AccessRequestStatus,
    JurisdictionGroup,
    JurisdictionGroupVersion,
    ProtectedAsset,
    RuleStatus,
    SovereigntyRule,
)

if TYPE_CHECKING:
    pass
from tenants.sovereignty.services.assets import actions_for, asset_request
from tenants.sovereignty.services.decisions import (
    SiteLike,
    Subject,
    as_rule,
    person_facts,
    site_facts,
)

# --- Rules lifecycle and what-if ---------------------------------------------------------------


class RuleRejected(Invalid):
    """A rule that cannot change status (400): not a draft, already retired, ill-typed."""

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(message, code=code, field=field)


class ConfirmationRequired(Conflict):
    """409: activating the rule would deny what exists now; the body's ``would_deny`` lists it,
    and the caller activates it by asking again with ``confirm``."""

    default_code = "confirmation_required"

    def __init__(self, result: dict[str, Any]) -> None:
        n = len(result["would_deny"])
        super().__init__(
            f"activating this rule would deny {n} existing placement(s) or access(es); "
            "review would_deny and activate with confirm: true",
            code=self.default_code,
            field="confirm",
        )
        self.result = result

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "would_deny": self.result["would_deny"]}


def _activate(rule: SovereigntyRule, *, confirm: bool, superseding: int | None) -> None:
    """Pin the current group versions (and, for a provenance rule that trusts any root, the
    roots in force), run the what-if, and refuse without ``confirm`` when it
    would deny anything; the what-if is stored with the activation (and so in its audit
    event's ``after``)."""
    pins = rule.current_groups()
    missing = sorted(rule.named_groups() - set(pins))
    if missing:
        raise RuleRejected("params", "unknown_place", f"no such jurisdiction group: {missing[0]}")
    probe = SovereigntyRule(
        pk=rule.pk,
        tenant_id=rule.tenant_id,
        kind=rule.kind,
        params=rule.params,
        name=rule.name,
        status=RuleStatus.DRAFT,
        supersedes_id=superseding,
    )
    result = what_if(probe)
    if result["would_deny"] and not confirm:
        raise ConfirmationRequired(result)
    rule.pinned_groups = pins
    rule.pinned_roots = rule.current_roots()
    rule.activation_what_if = {
        **result,
        "confirmed": bool(confirm),
        "at": timezone.now().isoformat(),
    }


def activate_rule(
    rule: SovereigntyRule, ctx: ChangeContext, *, confirm: bool = False
) -> SovereigntyRule:
    """Draft → active, after Cedar type-checks it; the rule it supersedes retires at once. The
    group versions it names are pinned now: a later change of a group reaches it only when the
    tenant re-activates (``repin_rule``, or a new draft superseding it)."""
    with transaction.atomic():
        rule = SovereigntyRule.objects.select_for_update().get(pk=rule.pk)
        if rule.status != RuleStatus.DRAFT:
            raise RuleRejected("status", "not_a_draft", f"rule is {rule.status}, not a draft")
        errors = cedar.validation_errors([as_rule(rule)])
        if errors:
            raise RuleRejected("params", "invalid_policy", errors[0])
        _activate(rule, confirm=confirm, superseding=rule.supersedes_id)
        now = timezone.now()
        if rule.supersedes_id:
            old = SovereigntyRule.objects.select_for_update().get(pk=rule.supersedes_id)
            if old.status == RuleStatus.ACTIVE:
                old.status, old.retired_at = RuleStatus.RETIRED, now
                save_object(old, ctx)
        rule.status, rule.activated_at = RuleStatus.ACTIVE, now
        return save_object(rule, ctx)


def repin_rule(
    rule: SovereigntyRule, ctx: ChangeContext, *, confirm: bool = False
) -> SovereigntyRule:
    """Re-activate an active rule: pin the groups' current versions (the tenant's decision to
    take a provider's or its own group change), with the same what-if and confirmation."""
    with transaction.atomic():
        rule = SovereigntyRule.objects.select_for_update().get(pk=rule.pk)
        if rule.status != RuleStatus.ACTIVE:
            raise RuleRejected("status", "not_active", f"rule is {rule.status}, not active")
        _activate(rule, confirm=confirm, superseding=rule.pk)
        rule.activated_at = timezone.now()
        return save_object(rule, ctx)


def retire_rule(rule: SovereigntyRule, ctx: ChangeContext) -> SovereigntyRule:
    with transaction.atomic():
        rule = SovereigntyRule.objects.select_for_update().get(pk=rule.pk)
        if rule.status == RuleStatus.RETIRED:
            raise RuleRejected("status", "already_retired", "rule is already retired")
        rule.status, rule.retired_at = RuleStatus.RETIRED, timezone.now()
        return save_object(rule, ctx)


def delete_rule(rule: SovereigntyRule, ctx: ChangeContext) -> None:
    """Only a draft is deleted: an active rule is retired (its decisions name it), and a
    retired one is history."""

    def refuse_unless_draft(stored: SovereigntyRule) -> None:
        if stored.status == RuleStatus.ACTIVE:
            raise Conflict(
                "an active rule cannot be deleted: retire it", code="rule_active", field="status"
            )
        if stored.status != RuleStatus.DRAFT:
            raise Conflict(
                f"a {stored.status} rule is history and cannot be deleted",
                code="rule_retired",
                field="status",
            )

    delete_object(rule, ctx, before_delete=refuse_unless_draft)


# --- Groups: immutable versions ----------------------------------------------------------------


def _rules_naming(group: JurisdictionGroup) -> list[SovereigntyRule]:
    """The active and draft rules that name ``group`` (a built-in one: every tenant's that has
    no own group of that code)."""
    rules = SovereigntyRule.objects.filter(status__in=[RuleStatus.ACTIVE, RuleStatus.DRAFT])
    if group.tenant_id is not None:
        rules = rules.filter(tenant_id=group.tenant_id)
    return [r for r in rules if group.code in r.named_groups()]


def _tenants_with_bases_naming(group: JurisdictionGroup) -> set[int]:
    """Tenants whose legal bases name ``group`` (a built-in one: those without an own group of
    that code); their bases keep the countries they pinned until recorded again."""
    from tenants.sovereignty.models import TransferBasis

    bases = TransferBasis.objects.filter(destination=group.code)
    if group.tenant_id is not None:
        bases = bases.filter(tenant_id=group.tenant_id)
    else:
        own = JurisdictionGroup.objects.filter(code=group.code, tenant__isnull=False)
        bases = bases.exclude(tenant_id__in=own.values("tenant_id"))
    return set(bases.values_list("tenant_id", flat=True))


def save_group(group: JurisdictionGroup, ctx: ChangeContext) -> JurisdictionGroup:
    """Create a tenant's group (version 1), or change it: new countries are a new version (the
    old one is kept); the code and tenant never change. Built-in groups are not changed here,
    by anyone: a provider data migration or ``manage.py revise_group`` makes their next
    version."""
    with transaction.atomic():
        if group._state.adding or group.pk is None:
            if group.tenant_id is None:
                raise Denied(
                    "built-in groups are defined by the provider's data migrations",
                    code="builtin_group",
                    field="tenant",
                )
            group.version = 1
            saved = save_object(group, ctx)
            JurisdictionGroupVersion.objects.create(
                group=saved, version=1, name=saved.name, countries=sorted(saved.countries)
            )
            return saved
        stored = JurisdictionGroup.objects.select_for_update().get(pk=group.pk)
        if stored.tenant_id is None:
            raise Denied(
                "a built-in group is never edited: the provider publishes a new version",
                code="builtin_group",
                field="countries",
            )
        if group.tenant_id != stored.tenant_id:
            raise Invalid("a group stays with its tenant", code="immutable", field="tenant")
        if group.code != stored.code:
            raise Invalid(
                "a group's code is what rules name: it never changes",
                code="immutable",
                field="code",
            )
        if sorted(group.countries or []) != sorted(stored.countries):
            group.version = stored.version + 1
            saved = save_object(group, ctx)
            JurisdictionGroupVersion.objects.create(
                group=saved,
                version=saved.version,
                name=saved.name,
                countries=sorted(saved.countries),
            )
            return saved
        group.version = stored.version
        return save_object(group, ctx)


def revise_group(
    group: JurisdictionGroup, countries: list[str], ctx: ChangeContext, name: str | None = None
) -> JurisdictionGroup:
    """The next version of a group (the provider's path for a built-in one). Recorded in the
    audit log of every tenant whose active or draft rules name it; active rules keep their
    pinned version until the tenant re-activates them."""
    with transaction.atomic():
        stored = JurisdictionGroup.objects.select_for_update().get(pk=group.pk)
        before = {"version": stored.version, "countries": sorted(stored.countries)}
        stored.countries = sorted(set(countries))
        if name:
            stored.name = name
        stored.version += 1
        stored.full_clean()
        stored.save()
        JurisdictionGroupVersion.objects.create(
            group=stored, version=stored.version, name=stored.name, countries=stored.countries
        )
        after = {"version": stored.version, "countries": stored.countries}
        tenants = sorted(
            {r.tenant_id for r in _rules_naming(stored)} | _tenants_with_bases_naming(stored)
        )
        if stored.tenant_id is not None:
            tenants = [stored.tenant_id]
        for tenant_id in tenants:
            pinned = [
                r.pk
                for r in _rules_naming(stored)
                if r.tenant_id == tenant_id and r.status == RuleStatus.ACTIVE
            ]
            audit.record(
                actor=ctx.actor,
                action=AuditAction.UPDATE,
                instance=stored,
                before=before,
                after={**after, "active_rules_pinned_to_older_version": pinned},
                source=ctx.source,
                request_id=ctx.request_id,
                tenant_id=tenant_id,
            )
        return stored


def delete_group(group: JurisdictionGroup, ctx: ChangeContext) -> None:
    """A tenant's group no active or draft rule names; built-in groups never."""

    def refuse(stored: JurisdictionGroup) -> None:
        if stored.tenant_id is None:
            raise Denied("a built-in group is never deleted", code="builtin_group")
        naming = _rules_naming(stored)
        if naming:
            raise Conflict(
                f"rule {naming[0].pk} ({naming[0].name}) names this group",
                code="group_in_use",
            )

    delete_object(group, ctx, before_delete=refuse)


def what_if(draft: SovereigntyRule) -> dict[str, Any]:
    """Run a draft against the live fleet: every current placement, replica and standing access
    it would deny, before it is activated. Nothing is recorded: it is a question, not an act."""
    active = SovereigntyRule.objects.filter(tenant_id=draft.tenant_id, status=RuleStatus.ACTIVE)
    rules = [as_rule(r) for r in active.exclude(pk=draft.supersedes_id or 0)] + [as_rule(draft)]
    compiled = cedar.compile_rules(rules)
    facts_by_site: dict[int, SiteFacts] = {}

    def facts(site: SiteLike) -> SiteFacts:
        if site.pk not in facts_by_site:
            facts_by_site[site.pk] = site_facts(site)
        return facts_by_site[site.pk]

    checks: list[tuple[Subject, int, Request]] = []
    for asset in ProtectedAsset.objects.filter(
        tenant_id=draft.tenant_id, site__isnull=False
    ).select_related("site"):
        site = asset.site
        assert site is not None  # filtered on site__isnull=False
        # The same questions, with the same facts, that keeping the asset there asks on its
        # next write (``save_asset``): a placement always, a replication for copies. No
        # origin: an asset already in place is not being moved.
        subject = Subject("asset", str(asset.pk), asset.name)
        for action in actions_for(asset, None, site):
            checks.append((subject, site.pk, asset_request(action, asset, site, facts(site))))
    standing = AccessRequest.objects.filter(
        tenant_id=draft.tenant_id, status=AccessRequestStatus.APPROVED, ends_at__gt=timezone.now()
    ).select_related("site", "person")
    for access in standing:
        site_country = getattr(access.site.country, "code", access.site.country)
        checks.append(
            (
                Subject("access-request", str(access.pk), str(access)),
                access.site_id,
                Request(
                    Action.ACCESS_SITE,
                    person_facts(access.person),
                    facts(access.site),
                    from_country=site_country,
                    approved=True,
                ),
            )
        )
    would_deny = []
    decisions = cedar.evaluate_many(compiled, [request for _, _, request in checks])
    for (subject, site_id, request), decision in zip(checks, decisions, strict=True):
        if not decision.allowed and draft.cedar_id in decision.rule_ids:
            would_deny.append(
                {
                    "type": subject.type,
                    "id": subject.id,
                    "repr": subject.repr,
                    "site": site_id,
                    "action": str(request.action),
                    "reasons": list(decision.reasons),
                }
            )
    return {"rule": draft.pk, "checked": len(checks), "would_deny": would_deny}
