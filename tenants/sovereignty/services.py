"""Sovereignty enforcement points: the functions placement, workflows and telemetry call.

Each builds only the facts its decision needs, asks the engine (the site's tenant's active
rules), records the decision in the access-transparency log, and raises ``SovereigntyDenied`` on
a deny so that nothing changes. Sites are taken as objects with ``pk``, ``tenant_id``,
``country``, ``air_gapped`` and ``accreditations`` (no import of the inventory app): see
``SiteLike``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, cast

from django.db import connection, transaction
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone

from tenants.errors import Conflict, Denied, FieldError, Invalid
from tenants.events.kinds import EventKind, timestamp
from tenants.events.services import emit
from tenants.services.changes import ChangeContext, save_object
from tenants.sovereignty.core import cedar
from tenants.sovereignty.core.model import (
    Action,
    ArtifactFacts,
    AssetFacts,
    Decision,
    PersonFacts,
    Request,
    Rule,
    RuleKind,
    SiteFacts,
)
from tenants.sovereignty.models import (
    AccessRequest,
    AccessRequestStatus,
    DecisionRecord,
    JurisdictionGroup,
    ProtectedAsset,
    RuleStatus,
    SovereigntyRule,
    TransferBasis,
)

if TYPE_CHECKING:
    from tenants.models import User

# Enforcement functions record each decision in the caller's transaction: call them before
# opening the transaction that acts on an allow, so that a denial is never rolled back.


class SovereigntyDenied(Denied):
    """A sovereignty rule forbids this (403): one reason per deciding rule, each naming it."""

    default_code = "sovereignty_denied"

    def __init__(self, decision: Decision) -> None:
        if len(decision.rule_ids) == len(decision.reasons):
            pairs = list(zip(decision.rule_ids, decision.reasons, strict=True))
        else:  # it failed closed: reasons alone
            pairs = [("", reason) for reason in decision.reasons]
        super().__init__(
            "; ".join(decision.reasons) or "denied by the tenant's sovereignty rules",
            errors=[
                FieldError(None, self.default_code, f"{rule}: {reason}" if rule else reason)
                for rule, reason in pairs
            ],
        )
        self.decision = decision


# --- Facts ---------------------------------------------------------------------------------


class SiteLike(Protocol):
    """What these functions read of a site (``factory.inventory.models.Site``, which this layer
    may not import)."""

    @property
    def pk(self) -> Any: ...
    @property
    def tenant_id(self) -> int: ...
    @property
    def country(self) -> Any: ...  # a django_countries ``Country``, or its code
    @property
    def air_gapped(self) -> bool: ...
    @property
    def accreditations(self) -> Any: ...  # JSON: a list of strings, when well formed


def jurisdictions(country: str, tenant_id: int | None) -> frozenset[str]:
    """The country plus every built-in or tenant-defined group that contains it."""
    if not country:
        return frozenset()
    groups = JurisdictionGroup.objects.filter(Q(tenant__isnull=True) | Q(tenant_id=tenant_id))
    codes = {
        code for code, countries in groups.values_list("code", "countries") if country in countries
    }
    return frozenset({country} | codes)


def site_facts(site: SiteLike) -> SiteFacts:
    country = getattr(site.country, "code", site.country) or ""
    accreditations = site.accreditations if isinstance(site.accreditations, list) else []
    return SiteFacts(
        id=str(site.pk),
        tenant=str(site.tenant_id),
        country=country,
        jurisdictions=jurisdictions(country, site.tenant_id),
        air_gapped=bool(site.air_gapped),
        accreditations=frozenset(a for a in accreditations if isinstance(a, str)),
    )


def asset_facts(asset: ProtectedAsset) -> AssetFacts:
    return AssetFacts(
        id=str(asset.pk),
        tenant=str(asset.tenant_id),
        kind=asset.kind,
        classification=asset.classification,
        labels=frozenset(asset.labels or []),
        site=str(asset.site_id) if asset.site_id else None,
    )


def person_facts(user: User) -> PersonFacts:
    return PersonFacts(
        id=user.get_username(),
        nationality=getattr(user.nationality, "code", user.nationality) or "",
        residency=getattr(user.residency, "code", user.residency) or "",
        clearance=user.clearance or "",
    )


# --- Policies ------------------------------------------------------------------------------

#: What changes whenever the tenant's active rules do: their count, sum of ids, last update.
Fingerprint = tuple[int, int, str | None]

_cache: dict[int, tuple[Fingerprint, cedar.CompiledPolicies]] = {}
_cache_lock = threading.Lock()


def as_rule(rule: SovereigntyRule) -> Rule:
    return Rule(
        rule.cedar_id,
        str(rule.tenant_id),
        RuleKind(rule.kind),
        rule.params,
        rule.sentence and f"{rule.name}: {rule.sentence}",
    )


def _rules_fingerprint(tenant_id: int) -> Fingerprint:
    active = SovereigntyRule.objects.filter(tenant_id=tenant_id, status=RuleStatus.ACTIVE)
    fp = active.aggregate(n=Count("id"), ids=Sum("id"), last=Max("updated_at"))
    return (fp["n"], fp["ids"] or 0, _iso(fp["last"]))


def active_policies(
    tenant_id: int, fingerprint: Fingerprint | None = None
) -> cedar.CompiledPolicies:
    """The tenant's active rules, compiled once and reused until a rule changes. The caller may
    pass the fingerprint it already read (``decision_context``); else one query reads it."""
    if fingerprint is None:
        fingerprint = _rules_fingerprint(tenant_id)
    cached = _cache.get(tenant_id)
    if cached and cached[0] == fingerprint:
        return cached[1]
    active = SovereigntyRule.objects.filter(tenant_id=tenant_id, status=RuleStatus.ACTIVE)
    compiled = cedar.compile_rules([as_rule(r) for r in active.order_by("pk")])
    with _cache_lock:
        _cache[tenant_id] = (fingerprint, compiled)
    return compiled


def _iso(value: str | dt.datetime | None) -> str | None:
    """A timestamp as one canonical UTC string, from PostgreSQL's JSON or a datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.astimezone(dt.UTC).isoformat()


# --- Everything a decision reads, in one round trip ------------------------------------------

_CONTEXT_SQL = """
SELECT s.id, s.tenant_id, s.country, s.air_gapped, s.accreditations,
       (SELECT json_build_array(count(*), coalesce(sum(r.id), 0), max(r.updated_at))
          FROM sovereignty_sovereigntyrule r
         WHERE r.tenant_id = s.tenant_id AND r.status = 'active') AS rules,
       (SELECT coalesce(json_agg(json_build_array(g.code, g.countries)), '[]'::json)
          FROM sovereignty_jurisdictiongroup g
         WHERE g.tenant_id IS NULL OR g.tenant_id = s.tenant_id) AS groups,
       a.id, a.tenant_id, a.kind, a.classification, a.labels, a.site_id
  FROM inventory_site s
  LEFT JOIN sovereignty_protectedasset a ON a.id = %s
 WHERE s.id = %s
"""


@dataclass(frozen=True)
class DecisionContext:
    site: SiteFacts
    asset: AssetFacts | None
    tenant_id: int
    policies: cedar.CompiledPolicies


def _json(value: Any) -> Any:
    """jsonb columns arrive as text through Django's connection; JSON built in SQL does not."""
    return json.loads(value) if isinstance(value, str) else value


def decision_context(site_id: int, asset_id: int | None = None) -> DecisionContext:
    """Site and asset facts, jurisdictions and the tenant's compiled policies. On PostgreSQL one
    query reads all of it (the decision budget is 2 ms at p99); elsewhere the ORM, in a few."""
    if connection.vendor != "postgresql":
        return decision_context_orm(site_id, asset_id)
    with connection.cursor() as cursor:
        cursor.execute(_CONTEXT_SQL, [asset_id, site_id])
        row = cursor.fetchone()
    if row is None:
        raise LookupError(f"no site {site_id}")
    (
        sid,
        tenant_id,
        country,
        air_gapped,
        accreditations,
        rules,
        groups,
        aid,
        a_tenant,
        kind,
        classification,
        labels,
        a_site,
    ) = row
    accreditations, labels, groups = _json(accreditations), _json(labels), _json(groups)
    codes = {code for code, countries in groups if country and country in _json(countries)}
    site = SiteFacts(
        str(sid),
        str(tenant_id),
        country or "",
        frozenset({country} | codes) if country else frozenset(),
        bool(air_gapped),
        frozenset(a for a in accreditations or [] if isinstance(a, str)),
    )
    asset = None
    if aid is not None:
        asset = AssetFacts(
            str(aid),
            str(a_tenant),
            kind,
            classification,
            frozenset(labels or []),
            str(a_site) if a_site else None,
        )
    fingerprint = (rules[0], rules[1], _iso(rules[2]))
    return DecisionContext(site, asset, tenant_id, active_policies(tenant_id, fingerprint))


def decision_context_orm(site_id: int, asset_id: int | None) -> DecisionContext:
    """``decision_context`` through the ORM: what it answers off PostgreSQL.

    Public because it is the reference the one-query path must agree with: a test compares the
    two on PostgreSQL, where ``decision_context`` itself never takes this path."""
    site_model = ProtectedAsset._meta.get_field("site").related_model
    assert isinstance(site_model, type)  # a model class, not "self" nor None
    site = cast(SiteLike, site_model._default_manager.get(pk=site_id))
    asset = ProtectedAsset.objects.get(pk=asset_id) if asset_id else None
    return DecisionContext(
        site_facts(site),
        asset_facts(asset) if asset else None,
        site.tenant_id,
        active_policies(site.tenant_id),
    )


# --- Deciding and recording ----------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """What the decision is about, for the transparency log."""

    type: str
    id: str
    repr: str


def decide(
    request: Request,
    *,
    tenant_id: int,
    subject: Subject,
    ctx: ChangeContext,
    site_id: int | None = None,
    raise_on_deny: bool = True,
    policies: cedar.CompiledPolicies | None = None,
) -> Decision:
    decision = cedar.evaluate(policies or active_policies(tenant_id), request)
    DecisionRecord.objects.create(
        tenant_id=tenant_id,
        actor_username=ctx.actor.username,
        action=str(request.action),
        principal=request.principal.id if request.principal else "",
        resource_type=subject.type,
        resource_id=subject.id,
        resource_repr=subject.repr[:200],
        site_id=site_id,
        allowed=decision.allowed,
        rule_ids=list(decision.rule_ids),
        reasons=list(decision.reasons),
        request_id=ctx.request_id[:64],
    )
    if raise_on_deny and not decision.allowed:
        raise SovereigntyDenied(decision)
    return decision


def _asset_subject(asset: ProtectedAsset) -> Subject:
    return Subject("asset", str(asset.pk or "new"), asset.name)


class KeyStoreFacts(TypedDict, total=False):
    """Where a site keeps keys, as ``Request`` fields (none given: the request's defaults)."""

    key_store_country: str
    key_store_customer_controlled: bool


def key_store_facts(site: SiteLike) -> KeyStoreFacts:
    """Keys placed at a site live in its key store: in-country by construction, and customer
    controlled where the site holds the ``customer-hsm`` accreditation."""
    country = getattr(site.country, "code", site.country) or ""
    return {
        "key_store_country": country,
        "key_store_customer_controlled": "customer-hsm" in (site.accreditations or []),
    }


def check_asset_at_site(
    asset: ProtectedAsset,
    site: SiteLike,
    ctx: ChangeContext,
    *,
    action: Action = Action.PLACE_ASSET,
) -> Decision:
    context = decision_context(site.pk)
    request = Request(
        action,
        None,
        context.site,
        asset=asset_facts(asset),
        legal_bases=bases_on_record(site.tenant_id, context.site)
        if action == Action.TRANSFER_ASSET
        else frozenset(),
        **(key_store_facts(site) if action == Action.PLACE_ASSET else {}),
    )
    return decide(
        request,
        tenant_id=site.tenant_id,
        subject=_asset_subject(asset),
        ctx=ctx,
        site_id=site.pk,
        policies=context.policies,
    )


def bases_on_record(tenant_id: int, destination: SiteFacts) -> frozenset[str]:
    """The kinds of legal basis the tenant has on record, still valid, for this destination."""
    today = timezone.now().date()
    records = TransferBasis.objects.filter(
        Q(valid_until__isnull=True) | Q(valid_until__gte=today),
        tenant_id=tenant_id,
        destination__in=destination.jurisdictions,
    )
    return frozenset(records.values_list("kind", flat=True))


def save_asset(asset: ProtectedAsset, ctx: ChangeContext) -> ProtectedAsset:
    """Create or change an asset; placing or moving it to a site is checked first.

    The decision is taken, and recorded, before the write transaction opens: a denial must stay
    in the transparency log even though the change it refused is never made."""
    stored_site = None
    if asset.pk:
        stored_site = (
            ProtectedAsset.objects.filter(pk=asset.pk).values_list("site_id", flat=True).first()
        )
    if asset.site_id and asset.site_id != stored_site:
        asset.full_clean()
        site = asset.site
        assert site is not None  # its id is set (and full_clean() found the row)
        check_asset_at_site(asset, site, ctx)
    return save_object(asset, ctx)


def check_workload(
    inputs: Iterable[ProtectedAsset], site: SiteLike, ctx: ChangeContext
) -> Decision:
    """Allocating capacity at ``site`` to a workload reading ``inputs``: every input must be
    allowed to be processed there (co-location). One decision per input is recorded."""
    denied_ids: list[str] = []
    reasons: list[str] = []
    allowed_ids: list[str] = []
    context = decision_context(site.pk)
    for asset in inputs:
        d = decide(
            Request(Action.PROCESS_ASSET, None, context.site, asset=asset_facts(asset)),
            tenant_id=site.tenant_id,
            subject=_asset_subject(asset),
            ctx=ctx,
            site_id=site.pk,
            raise_on_deny=False,
            policies=context.policies,
        )
        if d.allowed:
            allowed_ids += d.rule_ids
        else:
            denied_ids += d.rule_ids
            reasons += [f"{asset.name}: {r}" for r in d.reasons]
    if reasons:
        raise SovereigntyDenied(Decision(False, tuple(sorted(set(denied_ids))), tuple(reasons)))
    return Decision(True, tuple(sorted(set(allowed_ids))), ())


def approved_access(person: User, site: SiteLike, at: dt.datetime | None = None) -> bool:
    at = at or timezone.now()
    return AccessRequest.objects.filter(
        person=person,
        site_id=site.pk,
        status=AccessRequestStatus.APPROVED,
        starts_at__lte=at,
        ends_at__gt=at,
    ).exists()


def check_site_access(
    person: User, site: SiteLike, ctx: ChangeContext, *, from_country: str, remote: bool = False
) -> Decision:
    """Provider personnel acting on a site (technician dispatch, remote hands)."""
    context = decision_context(site.pk)
    request = Request(
        Action.ACCESS_SITE,
        person_facts(person),
        context.site,
        from_country=from_country,
        remote=remote,
        approved=approved_access(person, site),
    )
    return decide(
        request,
        tenant_id=site.tenant_id,
        ctx=ctx,
        site_id=site.pk,
        subject=Subject("site", str(site.pk), str(site)),
        policies=context.policies,
    )


def check_artifact(
    site: SiteLike, *, artifact_id: str, origin: str, signed: bool, ctx: ChangeContext
) -> Decision:
    """Firmware or software about to be delivered to a site."""
    context = decision_context(site.pk)
    request = Request(
        Action.ACCEPT_ARTIFACT,
        None,
        context.site,
        artifact=ArtifactFacts(artifact_id, origin, signed),
    )
    return decide(
        request,
        tenant_id=site.tenant_id,
        ctx=ctx,
        site_id=site.pk,
        subject=Subject("artifact", artifact_id[:64], f"{artifact_id} from {origin}"),
        policies=context.policies,
    )


def allowed_telemetry(
    site: SiteLike, categories: Iterable[str], destination: SiteLike, ctx: ChangeContext
) -> list[str]:
    """The telemetry categories that may leave ``site`` for ``destination``; the rest are to be
    dropped at the site agent."""
    context = decision_context(site.pk)
    source, target = context.site, decision_context(destination.pk).site
    allowed = []
    for category in categories:
        request = Request(
            Action.EGRESS_TELEMETRY, None, source, telemetry_category=category, destination=target
        )
        decision = decide(
            request,
            tenant_id=site.tenant_id,
            ctx=ctx,
            site_id=site.pk,
            subject=Subject("telemetry", category, f"{category} telemetry"),
            raise_on_deny=False,
            policies=context.policies,
        )
        if decision.allowed:
            allowed.append(category)
    return allowed


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


def _announce_access(kind: EventKind, access: AccessRequest, **more: Any) -> None:
    """The tenant's event about one of its access requests (in the caller's transaction)."""
    site, person = access.site.code, access.person.get_username()
    emit(
        kind,
        access,
        tenant=access.tenant_id,
        name=f"{person} @ {site} {access.starts_at:%Y-%m-%d %H:%M}",
        data={
            "site": site,
            "person": person,
            "requested_by": access.requested_by.get_username(),
            "reason": access.reason,
            "starts_at": timestamp(access.starts_at),
            "ends_at": timestamp(access.ends_at),
            "status": access.status,
            **more,
        },
    )


def request_access(access: AccessRequest, ctx: ChangeContext) -> AccessRequest:
    """The provider asks for a person's access to a tenant's site: saved (validated, audited)
    and announced to the tenant (``access_request.created``), in one transaction."""
    with transaction.atomic():
        access = save_object(access, ctx)
        _announce_access(EventKind.ACCESS_REQUEST_CREATED, access)
    return access


def decide_access(
    access: AccessRequest, approve: bool, user: User, ctx: ChangeContext
) -> AccessRequest:
    """A tenant-admin approves or rejects a pending access request (the lockbox). The caller
    checks the role; a request already decided is refused (409)."""
    with transaction.atomic():
        access = type(access).objects.select_for_update().get(pk=access.pk)
        if access.status != AccessRequestStatus.PENDING:
            raise Conflict(
                f"access request #{access.pk} is already {access.status}",
                code="already_decided",
                field="status",
            )
        access.status = AccessRequestStatus.APPROVED if approve else AccessRequestStatus.REJECTED
        access.decided_by, access.decided_at = user, timezone.now()
        access = save_object(access, ctx)
        _announce_access(EventKind.ACCESS_REQUEST_DECIDED, access, decided_by=user.get_username())
    return access


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
