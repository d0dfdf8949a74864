"""Facts, compiled policies and the one place a decision is taken and recorded.

Every enforcement point builds only the facts its decision needs, asks the engine, records the
decision in the access-transparency log and raises ``SovereigntyDenied`` on a deny. Sites are
taken as objects with ``pk``, ``tenant_id``, ``country``, ``air_gapped`` and ``accreditations``
(no import of the inventory app): see ``SiteLike``.

Facts are kept in memory (``decision_context``, ``active_policies``) and used only while the
sovereignty revision of every scope they depend on is unchanged (``tenants.sovereignty.revision``:
a trigger bumps it in the transaction of every write to sites, groups, rules, assets, legal bases
and key stores). So a decision's hot path reads one tiny row set, and never a fact that a
committed change has made stale. ``decide_many`` evaluates many requests against one compiled
slice in one Cedar call and records them in one multi-row insert.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone

from tenants.errors import Denied, FieldError
from tenants.models.audit import lock_chains
from tenants.services.changes import ChangeContext
from tenants.sovereignty import revision
from tenants.sovereignty.core import cedar
from tenants.sovereignty.core.model import (
    AssetFacts,
    Decision,
    PersonFacts,
    Request,
    Rule,
    RuleKind,
    SiteFacts,
)
from tenants.sovereignty.models import (
    DecisionRecord,
    JurisdictionGroup,
    ProtectedAsset,
    RuleStatus,
    SovereigntyRule,
)
from tenants.sovereignty.models.decisions import REPEATS_RESOURCE, DecisionRepeat

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
#: Revisions (scope, value) that the cached context or policies were read at, sorted by scope.
Revisions = tuple[tuple[int, int], ...]
#: (site id, asset id) -> (scopes, revisions, context): bounded, cleared when full.
_contexts: dict[tuple[int, int | None], tuple[tuple[int, ...], Revisions, DecisionContext]] = {}
_policy_revisions: dict[int, tuple[Revisions, cedar.CompiledPolicies]] = {}
CONTEXTS_MAX = 50_000

_revision_sql: dict[tuple[int, ...], str] = {}


def _revisions(scopes: tuple[int, ...]) -> Revisions:
    """The current revision of ``scopes`` (a never-bumped scope has no row): one tiny read.
    The scopes are integers written into the text (half the time of an array parameter)."""
    sql = _revision_sql.get(scopes)
    if sql is None:
        listed = ", ".join(str(int(scope)) for scope in scopes)
        sql = f"SELECT scope, value FROM {revision.TABLE} WHERE scope IN ({listed}) ORDER BY scope"
        if len(_revision_sql) < CONTEXTS_MAX:
            _revision_sql[scopes] = sql
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return tuple(cursor.fetchall())


T = TypeVar("T")
_memos: dict[Hashable, tuple[Revisions, Any]] = {}


def context_memo(
    context: DecisionContext, key: Hashable, scopes: tuple[int, ...], load: Callable[[], T]
) -> T:
    """A further fact of a decision (e.g. the key stores serving its site), loaded once and
    reused while the revisions ``context`` was checked against are current: no extra read.

    ``load`` may read only rows whose changes bump one of ``scopes`` (attached tables), and
    every scope must be one of the context's (else, and off PostgreSQL: loaded every time).
    ``key`` names the fact and its arguments, e.g. ``("key_stores", tenant_id, site_id)``."""
    revs = context.revisions
    if revs is None or not set(scopes) <= set(context.scopes):
        return load()
    hit = _memos.get(key)
    if hit is not None and hit[0] == revs:
        return cast(T, hit[1])
    value = load()
    if len(_memos) >= CONTEXTS_MAX:
        _memos.clear()
    _memos[key] = (revs, value)
    return value


def clear_caches() -> None:
    """Forget every cached fact and compilation (tests, benchmarks; never needed for safety)."""
    with _cache_lock:
        _cache.clear()
        _contexts.clear()
        _policy_revisions.clear()
        _memos.clear()


def as_rule(rule: SovereigntyRule) -> Rule:
    """The rule for the engine, its groups expanded to countries: the versions pinned when it
    was activated (a draft: the current ones), never a group's definition at decision time."""
    return Rule(
        rule.cedar_id,
        str(rule.tenant_id),
        RuleKind(rule.kind),
        rule.expanded_params(),
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
    pass the fingerprint it already read (``decision_context``); else, on PostgreSQL, the
    compilation is reused while the tenant's revision is unchanged (one tiny read), and one
    query reads the fingerprint when it has changed."""
    if fingerprint is None and connection.vendor == "postgresql":
        scopes = (revision.GLOBAL, tenant_id)
        known = _policy_revisions.get(tenant_id)
        if known is not None and known[0] == _revisions(scopes):
            return known[1]
        with connection.cursor() as cursor:  # the fingerprint and revisions in one snapshot
            cursor.execute(_POLICIES_SQL, [list(scopes), tenant_id])
            n, ids, last, revs = cursor.fetchone()
        compiled = active_policies(tenant_id, (n, ids, _iso(last)))
        _policy_revisions[tenant_id] = (_pairs(revs), compiled)
        return compiled
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


_POLICIES_SQL = f"""
SELECT count(*), coalesce(sum(r.id), 0), max(r.updated_at),
       (SELECT coalesce(json_agg(json_build_array(v.scope, v.value)), '[]'::json)
          FROM {revision.TABLE} v WHERE v.scope = ANY(%s::bigint[]))
  FROM sovereignty_sovereigntyrule r
 WHERE r.tenant_id = %s AND r.status = 'active'
"""


def _pairs(value: Any) -> Revisions:
    """Revisions read as JSON ``[[scope, value], ...]``, in ``_revisions``' form."""
    return tuple(sorted((int(scope), int(v)) for scope, v in _json(value)))


# --- Everything a decision reads, in one round trip ------------------------------------------

_CONTEXT_SQL = """
SELECT s.id, s.tenant_id, s.country, s.air_gapped, s.accreditations,
       (SELECT json_build_array(count(*), coalesce(sum(r.id), 0), max(r.updated_at))
          FROM sovereignty_sovereigntyrule r
         WHERE r.tenant_id = s.tenant_id AND r.status = 'active') AS rules,
       (SELECT coalesce(json_agg(json_build_array(g.code, g.countries)), '[]'::json)
          FROM sovereignty_jurisdictiongroup g
         WHERE g.tenant_id IS NULL OR g.tenant_id = s.tenant_id) AS groups,
       a.id, a.tenant_id, a.kind, a.classification, a.labels, a.site_id,
       (SELECT coalesce(json_agg(json_build_array(v.scope, v.value)), '[]'::json)
          FROM sovereignty_revision v
         WHERE v.scope IN (0, s.tenant_id, a.tenant_id)) AS revisions
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
    #: The revision scopes these facts depend on and the revisions they were (last) checked
    #: at; ``None`` when not cached (off PostgreSQL, or an asset that does not exist).
    scopes: tuple[int, ...] = ()
    revisions: Revisions | None = None


def _json(value: Any) -> Any:
    """jsonb columns arrive as text through Django's connection; JSON built in SQL does not."""
    return json.loads(value) if isinstance(value, str) else value


def decision_context(site_id: int, asset_id: int | None = None) -> DecisionContext:
    """Site and asset facts, jurisdictions and the tenant's compiled policies. On PostgreSQL from
    memory while the revisions they were read at are current (one tiny read), else one query
    reads all of it and the revisions with it (the decision budget is 2 ms at p99); elsewhere
    the ORM, in a few."""
    if connection.vendor != "postgresql":
        return decision_context_orm(site_id, asset_id)
    key = (int(site_id), int(asset_id) if asset_id is not None else None)
    cached = _contexts.get(key)
    if cached is not None and _revisions(cached[0]) == cached[1]:
        return cached[2]
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
        revs,
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
    policies = active_policies(tenant_id, fingerprint)
    if asset_id is not None and aid is None:  # not cached: no scope says when that asset appears
        return DecisionContext(site, asset, tenant_id, policies)
    scopes = tuple(sorted({revision.GLOBAL, tenant_id, *([a_tenant] if aid is not None else [])}))
    context = DecisionContext(site, asset, tenant_id, policies, scopes, _pairs(revs))
    if len(_contexts) >= CONTEXTS_MAX:
        _contexts.clear()
    _contexts[key] = (scopes, _pairs(revs), context)
    return context


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
        **_record_fields(request, decision, tenant_id, subject, ctx, site_id)
    )
    if raise_on_deny and not decision.allowed:
        raise SovereigntyDenied(decision)
    return decision


def _record_fields(
    request: Request,
    decision: Decision,
    tenant_id: int,
    subject: Subject,
    ctx: ChangeContext,
    site_id: int | None,
) -> dict[str, Any]:
    """The transparency-log row of one decision (``decide`` and ``decide_many`` alike)."""
    return dict(
        tenant_id=tenant_id,
        actor_username=ctx.actor.username,
        action=str(request.action),
        principal=request.principal.id if request.principal else "",
        resource_type=subject.type,
        resource_id=subject.id,
        resource_repr=subject.repr[:200],
        site_id=site_id,
        # The premises' owner sees the record (redacted); ``tenant_id`` is the asset's owner.
        site_owner_id=int(request.site.tenant) if request.site.tenant.isdigit() else None,
        allowed=decision.allowed,
        rule_ids=list(decision.rule_ids),
        reasons=list(decision.reasons),
        request_id=ctx.request_id[:64],
    )


@dataclass(frozen=True)
class Ask:
    """One question of a batch: the request, what it is about, and where (for the log)."""

    request: Request
    subject: Subject
    site_id: int | None = None


def decide_many(
    asks: list[Ask],
    *,
    tenant_id: int,
    ctx: ChangeContext,
    raise_on_deny: bool = True,
    policies: cedar.CompiledPolicies | None = None,
    collapse: bool = False,
) -> list[Decision]:
    """``decide`` for many questions under one tenant's rules: one Cedar call per action (the
    compiled slice evaluated once for all) and one multi-row insert into the transparency log.
    Every decision is recorded before the first deny is raised: a batch check logs each of its
    questions, where the one-by-one loop it replaces stopped at the first deny.

    ``collapse``: a machine's repeated question (a telemetry poll) is recorded once per period
    and counted (``record_collapsed``), so that it cannot push a person's denial off the page."""
    if not asks:
        return []
    decisions = cedar.evaluate_many(
        policies or active_policies(tenant_id), [ask.request for ask in asks]
    )
    rows = [
        _record_fields(ask.request, decision, tenant_id, ask.subject, ctx, ask.site_id)
        for ask, decision in zip(asks, decisions, strict=True)
    ]
    if collapse:
        record_collapsed(rows, tenant_id)
    else:
        DecisionRecord.objects.bulk_create([DecisionRecord(**row) for row in rows])
    if raise_on_deny:
        for decision in decisions:
            if not decision.allowed:
                raise SovereigntyDenied(decision)
    return decisions


# --- Repeats: counted beside the chain, summarised into it -----------------------------------


def repeat_period() -> dt.timedelta:
    """How long identical decisions are counted against one chained row before the next one."""
    return dt.timedelta(seconds=getattr(settings, "SOVEREIGNTY_DECISION_REPEAT_SECONDS", 3600))


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


def repeat_key(row: dict[str, Any]) -> str:
    """What a decision is about: the same key, the same question."""
    return _digest(
        row["action"], row["principal"], row["resource_type"], row["resource_id"], row["site_id"]
    )


def repeat_outcome(row: dict[str, Any]) -> str:
    """What it answered: the same outcome, an identical decision."""
    return _digest(bool(row["allowed"]), list(row["rule_ids"]), list(row["reasons"]))


def _utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _summary(tally: DecisionRepeat, now: dt.datetime) -> DecisionRecord:
    """The chained row that puts a tally's final count into the chain: what it repeated (the
    first occurrence's id, verdict, rules and reasons) and how often, from when to when."""
    first = tally.record
    span = f"{_utc(tally.first_at)} to {_utc(tally.last_at)}"
    return DecisionRecord(
        occurred_at=now,
        tenant_id=first.tenant_id,
        actor_username=first.actor_username,
        action=first.action,
        principal=first.principal,
        resource_type=REPEATS_RESOURCE,
        resource_id=str(first.pk),
        resource_repr=f"x{tally.count} from {span}: {first.resource_repr}"[:200],
        site_id=first.site_id,
        site_owner_id=first.site_owner_id,
        allowed=first.allowed,
        rule_ids=first.rule_ids,
        reasons=first.reasons,
        request_id=first.request_id,
    )


def _unique_runs(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``rows`` in order, cut wherever a key comes back: each run asks each question once."""
    runs: list[list[dict[str, Any]]] = [[]]
    seen: set[str] = set()
    for row in rows:
        key = repeat_key(row)
        if key in seen:
            runs.append([])
            seen = set()
        seen.add(key)
        runs[-1].append(row)
    return runs


def record_collapsed(rows: list[dict[str, Any]], tenant_id: int) -> None:
    """Record decisions, a repeat of the open tally's decision (same key and outcome, within
    ``repeat_period`` of its first) only counted. A changed outcome or a lapsed period closes
    the tally: its chained summary row is written, then the new decision's chained row.

    Serialised on the tenant's decision-chain lock (taken first, so in the one global order):
    two workers asking at once make one chained row and one tally counting both."""
    with transaction.atomic(savepoint=False):
        lock_chains(DecisionRecord, [tenant_id])
        for run in _unique_runs(rows):
            _record_run(run, tenant_id, timezone.now())


def _record_run(rows: list[dict[str, Any]], tenant_id: int, now: dt.datetime) -> None:
    period = repeat_period()
    keyed = [(repeat_key(row), repeat_outcome(row), row) for row in rows]
    open_tallies = {
        tally.key: tally
        for tally in DecisionRepeat.objects.select_related("record").filter(
            tenant_id=tenant_id, closed=False, key__in=[key for key, _, _ in keyed]
        )
    }
    counted: list[DecisionRepeat] = []
    closing: list[DecisionRepeat] = []
    fresh: list[tuple[str, str, DecisionRecord]] = []
    for key, outcome, row in keyed:
        tally = open_tallies.get(key)
        if tally is not None and tally.outcome == outcome and now - tally.first_at < period:
            tally.count += 1
            tally.last_at = now
            counted.append(tally)
            continue
        if tally is not None:
            closing.append(tally)
        fresh.append((key, outcome, DecisionRecord(**row)))
    _close(closing, now, [record for _, _, record in fresh])
    DecisionRepeat.objects.bulk_update(counted, ["count", "last_at"])
    DecisionRepeat.objects.bulk_create(
        [
            DecisionRepeat(
                record=record,
                tenant_id=tenant_id,
                key=key,
                outcome=outcome,
                first_at=record.occurred_at,
                last_at=record.occurred_at,
            )
            for key, outcome, record in fresh
        ]
    )


def _close(
    tallies: list[DecisionRepeat], now: dt.datetime, then: list[DecisionRecord] | None = None
) -> None:
    """Close ``tallies``: a summary row for each that repeated, chained before ``then`` (the
    rows that replace them), in one insert."""
    summaries = {tally.pk: _summary(tally, now) for tally in tallies if tally.count > 1}
    DecisionRecord.objects.bulk_create([*summaries.values(), *(then or [])])
    for tally in tallies:
        tally.closed = True
        tally.summary = summaries.get(tally.pk)
    DecisionRepeat.objects.bulk_update(tallies, ["closed", "summary"])


def close_repeats(
    tenant_id: int | None = None, *, everything: bool = False, now: dt.datetime | None = None
) -> int:
    """The beat job (and an evidence export's first step, ``everything=True``): close the
    tallies whose period has ended, so that every count reaches the chain. Returns how many."""
    now = now or timezone.now()
    due = DecisionRepeat.objects.filter(closed=False)
    if tenant_id is not None:
        due = due.filter(tenant_id=tenant_id)
    if not everything:
        due = due.filter(first_at__lte=now - repeat_period())
    closed = 0
    for tenant in sorted(set(due.values_list("tenant_id", flat=True))):
        with transaction.atomic():
            lock_chains(DecisionRecord, [tenant])
            tallies = list(due.filter(tenant_id=tenant).select_related("record").order_by("pk"))
            _close(tallies, now)
            closed += len(tallies)
    return closed


def _asset_subject(asset: ProtectedAsset) -> Subject:
    return Subject("asset", str(asset.pk or "new"), asset.name)
