"""A tenant's rules: activation, retirement and what-if."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from tenants.errors import Invalid
from tenants.services.changes import ChangeContext, save_object
from tenants.sovereignty.core import cedar
from tenants.sovereignty.core.model import (
    Action,
    Request,
    SiteFacts,
)
from tenants.sovereignty.models import (
    AccessRequest,
    AccessRequestStatus,
    ProtectedAsset,
    RuleStatus,
    SovereigntyRule,
)

if TYPE_CHECKING:
    pass
from tenants.sovereignty.services.assets import key_store_facts
from tenants.sovereignty.services.decisions import (
    SiteLike,
    Subject,
    as_rule,
    asset_facts,
    person_facts,
    site_facts,
)

# --- Rules lifecycle and what-if ---------------------------------------------------------------


class RuleRejected(Invalid):
    """A rule that cannot change status (400): not a draft, already retired, ill-typed."""

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(message, code=code, field=field)


def activate_rule(rule: SovereigntyRule, ctx: ChangeContext) -> SovereigntyRule:
    """Draft → active, after Cedar type-checks it; the rule it supersedes retires at once."""
    with transaction.atomic():
        rule = SovereigntyRule.objects.select_for_update().get(pk=rule.pk)
        if rule.status != RuleStatus.DRAFT:
            raise RuleRejected("status", "not_a_draft", f"rule is {rule.status}, not a draft")
        errors = cedar.validation_errors([as_rule(rule)])
        if errors:
            raise RuleRejected("params", "invalid_policy", errors[0])
        now = timezone.now()
        if rule.supersedes_id:
            old = SovereigntyRule.objects.select_for_update().get(pk=rule.supersedes_id)
            if old.status == RuleStatus.ACTIVE:
                old.status, old.retired_at = RuleStatus.RETIRED, now
                save_object(old, ctx)
        rule.status, rule.activated_at = RuleStatus.ACTIVE, now
        return save_object(rule, ctx)


def retire_rule(rule: SovereigntyRule, ctx: ChangeContext) -> SovereigntyRule:
    with transaction.atomic():
        rule = SovereigntyRule.objects.select_for_update().get(pk=rule.pk)
        if rule.status == RuleStatus.RETIRED:
            raise RuleRejected("status", "already_retired", "rule is already retired")
        rule.status, rule.retired_at = RuleStatus.RETIRED, timezone.now()
        return save_object(rule, ctx)


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
        action = (
            Action.REPLICATE_ASSET if asset.kind in ("replica", "backup") else Action.PLACE_ASSET
        )
        extra = key_store_facts(site) if action == Action.PLACE_ASSET else {}
        checks.append(
            (
                Subject("asset", str(asset.pk), asset.name),
                site.pk,
                Request(action, None, facts(site), asset=asset_facts(asset), **extra),
            )
        )
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
    for subject, site_id, request in checks:
        decision = cedar.evaluate(compiled, request)
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
