"""The fleet for Prometheus: read from the database at scrape time, so every web worker answers
the same and nothing is lost when one restarts; plus the in-process counters of the serving
processes (``factory.core.metrics``: HTTP requests, telemetry batches).

A scrape has a ``Scope``. The provider's (``/metrics``, or ``/api/v1/metrics/`` with a provider
token) shows every tenant's series and the plant-wide ones (HTTP, queues, jobs). A tenant
person's (``/api/v1/metrics/``) shows only the series of what the API would list for them:
their sites, servers, chips, faults and workflows, cut with the same ``scope_queryset`` and the
same tenant lookups as the API's viewsets.

The database families (everything but the in-process counters) are rendered once per scope
and kept ``METRICS_CACHE_SECONDS`` in the default cache (Redis: shared by every web process),
so however many scrapers ask, each scope costs at most one round of queries per period. The
in-process counters are read live at every scrape.

Labels stay bounded: sites, racks, feeds, server serials, tenants (slugs), workflow kinds and
step names, job names, fault rules, reasons from the code; never an id, a path or a free-text
message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import structlog
from django.conf import settings
from django.core.cache import caches
from django.db.models import (
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Max,
    Min,
    Q,
    QuerySet,
    Sum,
)
from django.utils import timezone
from prometheus_client import Counter
from prometheus_client.core import (
    CollectorRegistry,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

from factory.core import metrics as process
from factory.inventory import lifecycle
from factory.inventory.models import ChipCounts, Site, UltraServer
from factory.inventory.selectors import chip_counts_by
from factory.telemetry.choices import DeviceKind
from factory.telemetry.models import DeviceReading, Fault, ServerSample, ServerTelemetry
from factory.wire import FeedReading
from tenants.access import SYSTEM, Actor, scope_queryset
from tenants.errors import DomainError
from tenants.events import slots
from tenants.events.choices import DeliveryState
from tenants.events.models import WebhookDelivery, WebhookSubscription
from tenants.models import Tenant

logger = structlog.get_logger(__name__)

#: The API's tenant lookups (the viewsets' ``tenant_fields``) for what the fleet series count.
SITE_TENANT = ("tenant",)
SERVER_TENANT = ("rack__site__tenant", "tenant")
CHIP_TENANT = ("ultraserver__rack__site__tenant", "ultraserver__tenant")
TELEMETRY_TENANT = ("ultraserver__rack__site__tenant", "ultraserver__tenant")
SITE_OWNED = ("site__tenant",)  # faults, device readings, workflows
TENANT_SELF = ("pk",)
SUBSCRIPTION_TENANT = ("tenant",)
DELIVERY_TENANT = ("subscription__tenant",)


@dataclass(frozen=True)
class Scope:
    """Whose series a scrape shows."""

    actor: Actor

    @property
    def everything(self) -> bool:
        """The provider's view: every tenant, and the plant-wide series."""
        return self.actor.visible_tenant_ids() is None

    def filter(self, queryset: QuerySet, tenant_fields: Sequence[str]) -> QuerySet:
        return scope_queryset(queryset, self.actor, tenant_fields)

    def site_codes(self) -> set[str]:
        return set(self.filter(Site.objects.all(), SITE_TENANT).values_list("code", flat=True))

    @property
    def cache_key(self) -> str:
        """Scopes that see the same tenants see the same series: one cache entry for them."""
        visible = self.actor.visible_tenant_ids()
        if visible is None:
            return "metrics-exposition:everything"
        return "metrics-exposition:tenants:" + ",".join(str(t) for t in sorted(visible))


PROVIDER = Scope(SYSTEM)

Collect = Callable[[Scope], Iterable[Metric]]
_extra: list[Collect] = []


def register(collect: Collect) -> None:
    """Other apps add their families (the workflow engine: workflows, steps, queues, jobs).
    ``collect(scope)`` yields only what ``scope`` may see."""
    if collect not in _extra:
        _extra.append(collect)


# --- in-process counters: the telemetry gateway ------------------------------------------------

INGEST_ACCEPTED = Counter(
    "factory_telemetry_ingest_accepted_batches",
    "Telemetry batches the gateway accepted (stored, or acknowledged as replays), by site.",
    ["site"],
    registry=process.REGISTRY,
)
INGEST_REJECTED = Counter(
    "factory_telemetry_ingest_rejected_batches",
    "Telemetry batches the gateway refused with nothing stored, by site and the error code "
    "of the refusal (parse_error, unknown_source, other_site, too_large, ...).",
    ["site", "reason"],
    registry=process.REGISTRY,
)
INGEST_REPORTS = Counter(
    "factory_telemetry_ingest_reports",
    "Reports in accepted batches, by site and outcome: stored; replayed (numbered at or below "
    "its source's and agent epoch's highest: sent before); duplicate (new in its epoch, but a "
    "sample of that server at that Timestamp is stored: another agent's, or an outbox's "
    "restored). None of them is lost: a report not stored was already there.",
    ["site", "outcome"],
    registry=process.REGISTRY,
)
INGEST_CHIP_SAMPLES = Counter(
    "factory_telemetry_ingest_chip_samples",
    "Chip samples (one chip's metrics at one instant) in accepted batches, by site and outcome "
    "(stored, replayed, duplicate: as for the reports).",
    ["site", "outcome"],
    registry=process.REGISTRY,
)
INGEST_REJECTED_REPORTS = Counter(
    "factory_telemetry_ingest_rejected_reports",
    "Reports in refused batches (nothing of such a batch is stored), by site and the error "
    "code of the refusal (malformed: invalid, required, wrong_length...; other_site, "
    "unknown_source, epoch_required). A batch refused before its reports were read counts none.",
    ["site", "reason"],
    registry=process.REGISTRY,
)
INGEST_REJECTED_CHIP_SAMPLES = Counter(
    "factory_telemetry_ingest_rejected_chip_samples",
    "Chip samples in refused batches, by site and reason: those of the servers the batch "
    "names, once they were looked up (a batch refused while it is parsed counts none).",
    ["site", "reason"],
    registry=process.REGISTRY,
)
OUTCOMES = ("stored", "replayed", "duplicate")


def count_ingest(site: str) -> None:
    """One batch accepted. Its reports and chip samples are counted by ingest itself
    (``count_reports``), which tells replays from duplicates."""
    INGEST_ACCEPTED.labels(site).inc()


def count_reports(
    site: str, *, stored: tuple[int, int], replayed: tuple[int, int], duplicate: tuple[int, int]
) -> None:
    """An accepted batch's (reports, chip samples) by outcome; every outcome's series exists
    from the first batch on, so a rate over it is 0 rather than absent."""
    for outcome, (reports, chip_samples) in zip(
        OUTCOMES, (stored, replayed, duplicate), strict=True
    ):
        INGEST_REPORTS.labels(site, outcome).inc(reports)
        INGEST_CHIP_SAMPLES.labels(site, outcome).inc(chip_samples)


def count_rejected(site: str, refusal: DomainError) -> None:
    INGEST_REJECTED.labels(site, refusal.code).inc()


def count_refused_reports(site: str, reason: str, reports: int, chip_samples: int) -> None:
    INGEST_REJECTED_REPORTS.labels(site, reason).inc(reports)
    INGEST_REJECTED_CHIP_SAMPLES.labels(site, reason).inc(chip_samples)


# --- read from the database -------------------------------------------------------------------


@dataclass
class Durations:
    """One label set's histogram: cumulative count per bucket bound, count and sum."""

    within: list[int]
    count: int = 0
    seconds: float = 0.0

    def add(self, other: Durations) -> None:
        self.within = [a + b for a, b in zip(self.within, other.within, strict=True)]
        self.count += other.count
        self.seconds += other.seconds


def tally_durations(
    queryset: QuerySet,
    labels: Sequence[str],
    start: str,
    end: str,
    buckets: Sequence[float],
    **extra: Any,
) -> dict[tuple[str, ...], tuple[Durations, dict[str, Any]]]:
    """The ``end - start`` durations of the rows of ``queryset`` that have both, grouped by
    the ``labels`` lookups, in one aggregate query; ``extra`` aggregates ride along."""
    duration = ExpressionWrapper(F(end) - F(start), output_field=DurationField())
    within = {
        f"le_{i}": Count("pk", filter=Q(duration__lte=dt.timedelta(seconds=bound)))
        for i, bound in enumerate(buckets)
    }
    rows = (
        queryset.filter(**{f"{start}__isnull": False, f"{end}__isnull": False})
        .annotate(duration=duration)
        .order_by()
        .values(*labels)
        .annotate(n=Count("pk"), total=Sum("duration"), **within, **extra)
    )
    found: dict[tuple[str, ...], tuple[Durations, dict[str, Any]]] = {}
    for row in rows:
        total = row["total"] or dt.timedelta(0)
        durations = Durations(
            [row[f"le_{i}"] for i in range(len(buckets))], row["n"], total.total_seconds()
        )
        found[tuple(str(row[label] or "") for label in labels)] = (
            durations,
            {name: row[name] for name in extra},
        )
    return found


def histogram(
    name: str,
    documentation: str,
    labels: Sequence[str],
    buckets: Sequence[float],
    tallies: Iterable[tuple[tuple[str, ...], Durations]],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    for values, durations in sorted(tallies, key=lambda tally: tally[0]):
        within = zip(buckets, durations.within, strict=True)
        bounds = [(repr(float(bound)), n) for bound, n in within]
        family.add_metric(
            list(values), [*bounds, ("+Inf", durations.count)], sum_value=durations.seconds
        )
    return family


def fleet(scope: Scope = PROVIDER) -> Iterable[Metric]:
    chips = GaugeMetricFamily(
        "factory_chips", "Chips by site and health.", labels=["site", "health"]
    )
    # Summed from the counts kept per server, not a million chips. Every state of a site with
    # chips has its series, 0 included: a count that falls to zero reads 0, not absent.
    by_site = chip_counts_by(
        "ultraserver__rack__site__code", scope.filter(ChipCounts.objects.all(), CHIP_TENANT)
    )
    for site_code, by_state in sorted(by_site.items(), key=lambda item: item[0] or ""):
        for state, n in by_state.items():
            chips.add_metric([site_code or "", state], n)
    yield chips

    servers = GaugeMetricFamily(
        "factory_ultraservers",
        "UltraServers by site and lifecycle state.",
        labels=["site", "state"],
    )
    for row in (
        scope.filter(UltraServer.objects.all(), SERVER_TENANT)
        .order_by()
        .values("rack__site__code", "lifecycle_state")
        .annotate(n=Count("pk"))
    ):
        servers.add_metric([row["rack__site__code"] or "", row["lifecycle_state"]], row["n"])
    yield servers

    drawn = GaugeMetricFamily(
        "factory_power_drawn_watts", "Power the rack PDUs measure.", labels=["site", "rack", "feed"]
    )
    feeds_up = GaugeMetricFamily(
        "factory_power_feed_up",
        "1 while the rack PDU reports the feed up, 0 while it reports it lost.",
        labels=["site", "rack", "feed"],
    )
    readings = scope.filter(
        DeviceReading.objects.filter(kind=DeviceKind.PDU), SITE_OWNED
    ).select_related("site", "rack")
    for reading in readings:
        for feed, value in sorted(reading.values.get("feeds", {}).items()):
            labels = [reading.site.code, reading.rack.name if reading.rack else "", feed]
            drawn.add_metric(labels, float(value.get(FeedReading.POWER_W, 0.0)))
            feeds_up.add_metric(labels, 1.0 if value.get(FeedReading.UP) else 0.0)
    yield drawn
    yield feeds_up

    server_power = GaugeMetricFamily(
        "factory_ultraserver_power_watts",
        "Chip power of each UltraServer's latest sample, summed per site.",
        labels=["site"],
    )
    lag = GaugeMetricFamily(
        "factory_telemetry_lag_seconds",
        "Age of the newest sample stored for a site.",
        labels=["site"],
    )
    now = timezone.now()
    latest = scope.filter(ServerTelemetry.objects.all(), TELEMETRY_TENANT)
    for row in (
        latest.order_by()
        .values("ultraserver__rack__site__code")
        .annotate(watts=Sum("power_total_w"), newest=Max("ts"))
    ):
        site = row["ultraserver__rack__site__code"] or ""
        server_power.add_metric([site], float(row["watts"] or 0.0))
        lag.add_metric([site], max(0.0, (now - row["newest"]).total_seconds()))
    yield server_power
    yield lag

    age = GaugeMetricFamily(
        "factory_ultraserver_telemetry_age_seconds",
        "Seconds since the newest sample of each UltraServer that has reported (decommissioned "
        "servers left out): how fresh its telemetry is.",
        labels=["site", "ultraserver"],
    )
    for serial, site, ts in (
        latest.exclude(ultraserver__lifecycle_state=lifecycle.DECOMMISSIONED)
        .order_by("ultraserver__serial")
        .values_list("ultraserver__serial", "ultraserver__rack__site__code", "ts")
    ):
        age.add_metric([site or "", serial], max(0.0, (now - ts).total_seconds()))
    yield age

    window = 60
    recent = scope.filter(
        ServerSample.objects.filter(ts__gte=now - dt.timedelta(seconds=window)), TELEMETRY_TENANT
    ).aggregate(chips=Sum("chips"))
    rate = GaugeMetricFamily(
        "factory_telemetry_ingest_chip_samples_per_second",
        f"Chip samples stored over the last {window} s, per second.",
    )
    rate.add_metric([], float(recent["chips"] or 0) / window)
    yield rate

    faults = GaugeMetricFamily("factory_faults_open", "Open faults.", labels=["site", "rule"])
    for row in (
        scope.filter(Fault.objects.filter(cleared_at__isnull=True), SITE_OWNED)
        .order_by()
        .values("site__code", "rule")
        .annotate(n=Count("pk"))
    ):
        faults.add_metric([row["site__code"], row["rule"]], row["n"])
    yield faults


# --- the event log's deliveries and streams ----------------------------------------------------


def events(scope: Scope = PROVIDER) -> Iterable[Metric]:
    """Webhooks (subscriptions, deliveries not yet made, the oldest still waiting) and the
    watch streams open now, by tenant: at most a few series per tenant."""
    subscriptions = GaugeMetricFamily(
        "factory_webhook_subscriptions",
        "Webhook subscriptions by tenant and state: active, or disabled (by the tenant, or "
        "after failed deliveries, with a notice).",
        labels=["tenant", "state"],
    )
    tenants: set[str] = set()
    for row in (
        scope.filter(WebhookSubscription.objects.all(), SUBSCRIPTION_TENANT)
        .order_by()
        .values("tenant__slug")
        .annotate(active=Count("pk", filter=Q(is_active=True)), total=Count("pk"))
    ):
        tenant = row["tenant__slug"]
        tenants.add(tenant)
        subscriptions.add_metric([tenant, "active"], row["active"])
        subscriptions.add_metric([tenant, "disabled"], row["total"] - row["active"])
    yield subscriptions

    deliveries = GaugeMetricFamily(
        "factory_webhook_deliveries",
        "Webhook deliveries not made, by tenant and state: pending (due, leased or waiting "
        "for a retry; a disabled subscription's are held) and failed (gave up).",
        labels=["tenant", "state"],
    )
    oldest = GaugeMetricFamily(
        "factory_webhook_oldest_pending_delivery_age_seconds",
        "Age of the oldest pending delivery of an active subscription, by tenant: how far "
        "behind its receivers are (no series: nothing waits).",
        labels=["tenant"],
    )
    counts: dict[str, dict[str, int]] = {t: {} for t in tenants}
    now = timezone.now()
    for row in (
        scope.filter(
            WebhookDelivery.objects.filter(state__in=[DeliveryState.PENDING, DeliveryState.FAILED]),
            DELIVERY_TENANT,
        )
        .order_by()
        .values("subscription__tenant__slug")
        .annotate(
            pending=Count("pk", filter=Q(state=DeliveryState.PENDING)),
            failed=Count("pk", filter=Q(state=DeliveryState.FAILED)),
            since=Min(
                "created_at",
                filter=Q(state=DeliveryState.PENDING, subscription__is_active=True),
            ),
        )
    ):
        tenant = row["subscription__tenant__slug"]
        counts[tenant] = {"pending": row["pending"], "failed": row["failed"]}
        if row["since"] is not None:
            oldest.add_metric([tenant], max(0.0, (now - row["since"]).total_seconds()))
    for tenant in sorted(counts):
        for state in (DeliveryState.PENDING, DeliveryState.FAILED):
            deliveries.add_metric([tenant, state.value], counts[tenant].get(state.value, 0))
    yield deliveries
    yield oldest
    yield from streams(scope)


def streams(scope: Scope = PROVIDER) -> Iterable[Metric]:
    """Watch streams open now, as the stream caps count them (``tenants.events.slots``)."""
    slugs: list[tuple[int | None, str]] = list(
        scope.filter(Tenant.objects.order_by("slug"), TENANT_SELF).values_list("pk", "slug")
    )
    if scope.everything:
        slugs.append((None, ""))  # the provider's people's streams
    try:
        open_now = slots.open_streams([pk for pk, _ in slugs])
    except (redis.RedisError, OSError):
        logger.warning("event_stream_count_unavailable", exc_info=True)
        return
    family = GaugeMetricFamily(
        "factory_event_streams_open",
        "Event watch streams open now, by tenant (a person in several tenants counts in "
        'each; tenant="": the provider\'s people). Each holds a web thread.',
        labels=["tenant"],
    )
    for (_, slug), n in zip(slugs, open_now, strict=True):
        family.add_metric([slug], n)
    yield family


# --- the in-process families a scope may see ----------------------------------------------------


def in_process(scope: Scope) -> Iterable[Metric]:
    """The serving processes' counters. A tenant sees only the site-labelled ones, and only
    the samples of its own sites: the HTTP series span every tenant's requests."""
    families = process.collect()
    if scope.everything:
        yield from families
        return
    codes = scope.site_codes()
    for family in families:
        samples = [s for s in family.samples if s.labels.get("site") in codes]
        if not samples:
            continue
        kept = Metric(family.name, family.documentation, family.type, family.unit)
        kept.samples = samples
        yield kept


class _Collector:
    def __init__(self, families: Callable[[], Iterable[Metric]]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        yield from self.families()


def _render(families: Callable[[], Iterable[Metric]]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(families))
    return generate_latest(registry)


def from_database(scope: Scope) -> Iterable[Metric]:
    """Every family read from the database (and Redis) for ``scope``."""
    yield from fleet(scope)
    yield from events(scope)
    for extra in _extra:
        yield from extra(scope)


def _database_text(scope: Scope) -> bytes:
    """The database families' exposition, from the cache while it is fresh."""
    seconds = float(settings.METRICS_CACHE_SECONDS)
    if seconds <= 0:
        return _render(lambda: from_database(scope))
    cache = caches["default"]
    try:
        kept = cache.get(scope.cache_key)
    except Exception:  # the cache is down: read the database, as without one
        logger.warning("metrics cache unavailable", exc_info=True)
        kept = None
    if isinstance(kept, bytes):
        return kept
    text = _render(lambda: from_database(scope))
    try:
        cache.set(scope.cache_key, text, timeout=seconds)
    except Exception:
        logger.warning("metrics cache unavailable", exc_info=True)
    return text


def exposition(scope: Scope = PROVIDER) -> bytes:
    """The Prometheus text format of everything ``scope`` may see: the database families (kept
    for ``METRICS_CACHE_SECONDS``), then the in-process counters, read now."""
    return _database_text(scope) + _render(lambda: in_process(scope))
