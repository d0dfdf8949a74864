"""Roll-ups, retention and the read side of telemetry."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    Avg,
    Case,
    Count,
    ExpressionWrapper,
    F,
    FloatField,
    Max,
    QuerySet,
    Sum,
    When,
)
from django.db.models.functions import Trunc
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from factory.inventory.choices import ChipHealth
from factory.inventory.models import PowerFeed, Rack, Site, UltraServer
from factory.inventory.power import FeedCapacity, protected_budget
from factory.inventory.selectors import MAX_POWER_W
from factory.telemetry import codec, partitions
from factory.telemetry.choices import DeviceKind, Resolution
from factory.telemetry.ingest import LATE_AFTER
from factory.telemetry.models import (
    DeviceReading,
    RollupBacklog,
    RollupCursor,
    ServerRollup,
    ServerSample,
    ServerTelemetry,
)
from factory.wire import FeedReading, HealthCode, Metric

#: How far before its last run's start a run reads raw rows again: ``LATE_AFTER``, plus a
#: margin for an ingest that began before that run and committed after it.
REREAD = LATE_AFTER + dt.timedelta(minutes=2)
#: How far back the very first run reads.
FIRST_LOOKBACK = dt.timedelta(minutes=10)
_CURSOR = "minute"
_MINUTE = dt.timedelta(minutes=1)
_HOUR = dt.timedelta(hours=1)
_ROLLUP_FIGURES = [
    "samples",
    "power_avg_w",
    "power_max_w",
    "temp_avg_c",
    "temp_max_c",
    "utilization_avg",
    "failed_chips_max",
]


@dataclass(frozen=True)
class RollupRun:
    """What one roll-up wrote: minute and hour buckets, and late minutes taken from the
    backlog; ``since``: how far back it read raw rows."""

    minutes: int
    hours: int
    backlog: int
    since: dt.datetime


def roll_up(now: dt.datetime | None = None) -> RollupRun:
    """Incremental roll-ups, idempotent, in one transaction: minute buckets from the raw rows
    that arrived since the last run (its window from a little before that run's start, and the
    late minutes ingest noted), then those minutes' hours from the minute buckets (an hour is
    never read from raw rows). A bucket is always recomputed whole, never added to, so a
    second run over the same rows writes the same figures."""
    now = now or timezone.now()
    with transaction.atomic():
        cursor = RollupCursor.objects.select_for_update().filter(name=_CURSOR).first()
        since = (
            min(cursor.rolled_until, now) - REREAD if cursor is not None else now - FIRST_LOOKBACK
        )
        since = _bucket_start(since, "minute")
        minutes = _minute_figures(ServerSample.objects.filter(ts__gte=since))
        hour_scopes = [ServerRollup.objects.filter(bucket__gte=_bucket_start(since, "hour"))]
        late = _take_backlog()
        for servers, first, last in _late_ranges(late):
            raw = ServerSample.objects.filter(
                ultraserver_id__in=servers, ts__gte=first, ts__lt=last + _MINUTE
            )
            minutes.update(_minute_figures(raw))
            hour_scopes.append(
                ServerRollup.objects.filter(
                    ultraserver_id__in=servers,
                    bucket__gte=_bucket_start(first, "hour"),
                    bucket__lt=_bucket_start(last, "hour") + _HOUR,
                )
            )
        _upsert(Resolution.MINUTE, minutes)
        hours: dict[tuple[int, dt.datetime], dict] = {}
        for scope in hour_scopes:
            hours.update(_hour_figures(scope.filter(resolution=Resolution.MINUTE)))
        _upsert(Resolution.HOUR, hours)
        RollupCursor.objects.update_or_create(name=_CURSOR, defaults={"rolled_until": now})
    return RollupRun(minutes=len(minutes), hours=len(hours), backlog=len(late), since=since)


def _take_backlog() -> list[tuple[int, int, dt.datetime]]:
    """Delete the backlog and return it, first thing in the run's transaction. Deleting at
    the end instead would lose a late sample: its ingest, finding the note still there, adds
    none (``ON CONFLICT DO NOTHING``) after this run read the raw rows. Deleted first, that
    ingest waits for this run's commit and then notes the minute again for the next run."""
    table = RollupBacklog._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} RETURNING id, ultraserver_id, bucket")
        rows = cursor.fetchall()
    return [(entry_id, server, _stored_moment(bucket)) for entry_id, server, bucket in rows]


def _stored_moment(value: dt.datetime | str) -> dt.datetime:
    """A datetime as a raw cursor gives it back: PostgreSQL's aware, SQLite's naive UTC (or
    text)."""
    moment = value if isinstance(value, dt.datetime) else parse_datetime(value)
    assert moment is not None, value
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _late_ranges(
    late: list[tuple[int, int, dt.datetime]],
) -> list[tuple[list[int], dt.datetime, dt.datetime]]:
    """The backlog's servers grouped by the span of their late minutes (a site's agents that
    caught up together share one), so one query reads each group."""
    spans: dict[int, tuple[dt.datetime, dt.datetime]] = {}
    for _, server, bucket in late:
        first, last = spans.get(server, (bucket, bucket))
        spans[server] = (min(first, bucket), max(last, bucket))
    groups: dict[tuple[dt.datetime, dt.datetime], list[int]] = defaultdict(list)
    for server, span in spans.items():
        groups[span].append(server)
    return [(sorted(servers), first, last) for (first, last), servers in groups.items()]


def _minute_figures(samples: QuerySet[ServerSample]) -> dict[tuple[int, dt.datetime], dict]:
    rows = (
        samples.annotate(bucket=Trunc("ts", "minute", tzinfo=dt.UTC))
        .values("ultraserver_id", "bucket")
        .annotate(
            samples=Count("id"),
            power_avg_w=Avg("power_total_w"),
            power_max_w=Max("power_total_w"),
            temp_avg_c=Avg("temp_avg_c"),
            temp_max_c=Max("temp_max_c"),
            utilization_avg=Avg("utilization_avg"),
            failed_chips_max=Max("failed_chips"),
        )
    )
    return {(row["ultraserver_id"], row["bucket"]): dict(row) for row in rows}


def _weighted(field: str) -> Any:
    """A mean of minute means, each weighted by its samples (minutes without the figure, an
    egress rule keeping it at the site, weigh nothing)."""
    total = Sum(F(field) * F("samples"), output_field=FloatField())
    weight = Sum(Case(When(**{f"{field}__isnull": False}, then=F("samples"))))
    return ExpressionWrapper(total / weight, output_field=FloatField())


def _hour_figures(minutes: QuerySet[ServerRollup]) -> dict[tuple[int, dt.datetime], dict]:
    rows = (
        minutes.annotate(hour=Trunc("bucket", "hour", tzinfo=dt.UTC))
        .values("ultraserver_id", "hour")
        .annotate(
            total=Sum("samples"),
            power_avg=_weighted("power_avg_w"),
            power_max=Max("power_max_w"),
            temp_avg=_weighted("temp_avg_c"),
            temp_max=Max("temp_max_c"),
            utilization=_weighted("utilization_avg"),
            failed_max=Max("failed_chips_max"),
        )
    )
    return {
        (row["ultraserver_id"], row["hour"]): {
            "ultraserver_id": row["ultraserver_id"],
            "bucket": row["hour"],
            "samples": row["total"],
            "power_avg_w": row["power_avg"],
            "power_max_w": row["power_max"],
            "temp_avg_c": row["temp_avg"],
            "temp_max_c": row["temp_max"],
            "utilization_avg": row["utilization"],
            "failed_chips_max": row["failed_max"],
        }
        for row in rows
    }


def _upsert(resolution: str, figures: dict[tuple[int, dt.datetime], dict]) -> None:
    ServerRollup.objects.bulk_create(
        [ServerRollup(resolution=resolution, **row) for row in figures.values()],
        batch_size=1000,
        update_conflicts=True,
        unique_fields=["ultraserver", "resolution", "bucket"],
        update_fields=_ROLLUP_FIGURES,
    )


def _bucket_start(moment: dt.datetime, unit: str) -> dt.datetime:
    moment = moment.astimezone(dt.UTC)
    if unit == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(second=0, microsecond=0)


def expire(now: dt.datetime | None = None, chunk: int = 50_000) -> dict[str, Any]:
    """Raw samples past the retention, then old roll-ups. Partitioned (PostgreSQL): the days
    wholly past it are dropped, strays in the default partition deleted, and the next days'
    partitions made; otherwise rows are deleted in chunks, so no lock is held long."""
    now = now or timezone.now()
    raw_before = now - dt.timedelta(hours=settings.TELEMETRY_RAW_RETENTION_HOURS)
    deleted: dict[str, Any] = {"raw": 0, "1m": 0, "1h": 0}
    if partitions.enabled():
        deleted["raw_partitions_dropped"] = partitions.drop_before(raw_before)
        deleted["raw"] = partitions.delete_stray_before(raw_before, chunk)
        deleted["raw_partitions_made"] = partitions.ensure(now)
    else:
        while True:
            ids = list(
                ServerSample.objects.filter(ts__lt=raw_before).values_list("id", flat=True)[:chunk]
            )
            if not ids:
                break
            deleted["raw"] += ServerSample.objects.filter(id__in=ids).delete()[0]
    for resolution, days in (
        (Resolution.MINUTE, settings.TELEMETRY_MINUTE_RETENTION_DAYS),
        (Resolution.HOUR, settings.TELEMETRY_HOUR_RETENTION_DAYS),
    ):
        deleted[resolution] = ServerRollup.objects.filter(
            resolution=resolution, bucket__lt=now - dt.timedelta(days=days)
        ).delete()[0]
    return deleted


# --- read side -----------------------------------------------------------------------------


#: The most points one series answer carries; past it the answer says where to go on.
MAX_POINTS = 10_000

#: A chip's reported health code (the wire's) by the name the API speaks (the inventory's).
HEALTH_NAMES: dict[int, str] = {
    HealthCode.OK: ChipHealth.OK.value,
    HealthCode.DEGRADED: ChipHealth.DEGRADED.value,
    HealthCode.FAILED: ChipHealth.FAILED.value,
}


def health_name(code: int | None) -> str | None:
    """The name of a reported health code: ``ok``, ``degraded``, ``failed``. A code above
    ``failed`` is read as failed, as the health rules and ``failed_chips`` read it; any other
    code is ``unknown``; None: no reading."""
    if code is None:
        return None
    if code > HealthCode.FAILED:
        return ChipHealth.FAILED.value
    return HEALTH_NAMES.get(code, ChipHealth.UNKNOWN.value)


def _chip_values(metric: str, data: bytes | memoryview | None) -> list | None:
    values = codec.unpack(metric, data)
    if metric == Metric.HEALTH and values is not None:
        return [health_name(v) for v in values]
    return values


@dataclass
class Series:
    """At most ``limit`` points from ``start``; ``truncated`` when more remain before the end,
    and then ``next_start`` is the first one left out (ask again from there)."""

    points: list[dict[str, Any]]
    limit: int
    truncated: bool
    next_start: dt.datetime | None


def series(
    server: UltraServer,
    start: dt.datetime,
    end: dt.datetime,
    resolution: str,
    limit: int = MAX_POINTS,
) -> Series:
    limit = max(1, min(limit, MAX_POINTS))
    if resolution == Resolution.RAW:
        rows = list(
            ServerSample.objects.filter(ultraserver=server, ts__gte=start, ts__lt=end).order_by(
                "ts"
            )[: limit + 1]
        )
        points = [
            {
                "ts": row.ts,
                "power_w": row.power_total_w,
                "temp_max_c": row.temp_max_c,
                "temp_avg_c": row.temp_avg_c,
                "utilization_avg": row.utilization_avg,
                "failed_chips": row.failed_chips,
                "chips": {m: _chip_values(m, getattr(row, m)) for m in codec.METRICS},
            }
            for row in rows[:limit]
        ]
        more = rows[limit].ts if len(rows) > limit else None
        return Series(points, limit, more is not None, more)
    rollups = list(
        ServerRollup.objects.filter(
            ultraserver=server, resolution=resolution, bucket__gte=start, bucket__lt=end
        ).order_by("bucket")[: limit + 1]
    )
    points = [
        {
            "ts": row.bucket,
            "samples": row.samples,
            "power_w": row.power_avg_w,
            "power_max_w": row.power_max_w,
            "temp_max_c": row.temp_max_c,
            "temp_avg_c": row.temp_avg_c,
            "utilization_avg": row.utilization_avg,
            "failed_chips": row.failed_chips_max,
        }
        for row in rollups[:limit]
    ]
    more = rollups[limit].bucket if len(rollups) > limit else None
    return Series(points, limit, more is not None, more)


def chip_health(server: UltraServer) -> dict[str, Any]:
    """Every chip now: the inventory's health verdict (``health``, as in ``/chips/``) beside the
    latest sample's readings, its reported health code by name (``reported_health``)."""
    latest = ServerTelemetry.objects.filter(ultraserver=server).first()
    values = {m: _chip_values(m, getattr(latest, m)) if latest else None for m in codec.METRICS}
    chips = []
    for chip in server.chips.all().order_by("index"):
        reading = {
            m: (column[chip.index] if column is not None and chip.index < len(column) else None)
            for m, column in values.items()
        }
        reading["reported_health"] = reading.pop(Metric.HEALTH)
        chips.append(
            {
                "index": chip.index,
                "serial": chip.serial,
                "health": chip.health,
                "health_note": chip.health_note,
                **reading,
            }
        )
    return {
        "ultraserver": server.pk,
        "ts": latest.ts if latest else None,
        "received_at": latest.received_at if latest else None,
        "chips": chips,
    }


@dataclass
class RackPower:
    """One rack's power: protected budget (one path under 2N), committed (peak of what is
    placed), and what its PDUs measure per feed (None: no reading yet)."""

    rack: Rack
    feeds: list[PowerFeed]
    budget_w: float
    committed_w: float
    drawn_by_feed: dict[str, float]
    readings: dict[str, Any]
    measured_at: dt.datetime | None

    @property
    def drawn_w(self) -> float | None:
        return float(sum(self.drawn_by_feed.values())) if self.measured_at else None


def rack_power(site_ids: list[int]) -> list[RackPower]:
    """Every rack of these sites, in four queries whatever their number."""
    racks = list(Rack.objects.filter(site_id__in=site_ids).order_by("site_id", "name"))
    feeds: defaultdict[int, list[PowerFeed]] = defaultdict(list)
    for feed in PowerFeed.objects.filter(rack__site_id__in=site_ids).order_by("path", "name"):
        feeds[feed.rack_id].append(feed)
    readings = {
        r.rack_id: r
        for r in DeviceReading.objects.filter(
            site_id__in=site_ids, kind=DeviceKind.PDU, rack__isnull=False
        )
    }
    committed = {
        row["rack_id"]: float(row["watts"] or 0)
        for row in UltraServer.objects.filter(rack__site_id__in=site_ids)
        .values("rack_id")
        .annotate(watts=Sum(MAX_POWER_W))
    }
    lines = []
    for rack in racks:
        reading = readings.get(rack.pk)
        values = reading.values.get("feeds", {}) if reading else {}
        lines.append(
            RackPower(
                rack=rack,
                feeds=feeds[rack.pk],
                budget_w=protected_budget(
                    FeedCapacity(f.path, f.capacity_watts) for f in feeds[rack.pk]
                ).watts,
                committed_w=committed.get(rack.pk, 0.0),
                # A feed that is down draws nothing, whatever its last figure was.
                drawn_by_feed={
                    name: float(v.get(FeedReading.POWER_W, 0.0)) if v.get(FeedReading.UP) else 0.0
                    for name, v in values.items()
                },
                readings=values,
                measured_at=reading.ts if reading else None,
            )
        )
    return lines


def site_power(site: Site) -> dict[str, Any]:
    """Per rack: the protected budget, the committed peak, and what the rack PDUs measure."""
    lines = [
        {
            "rack": line.rack.pk,
            "name": line.rack.name,
            "budget_w": line.budget_w,
            "committed_w": line.committed_w,
            "drawn_w": line.drawn_w,
            "feeds": {
                name: {
                    "power_w": float(v.get(FeedReading.POWER_W, 0.0)),
                    "up": bool(v.get(FeedReading.UP)),
                }
                for name, v in sorted(line.readings.items())
            },
            "measured_at": line.measured_at,
        }
        for line in rack_power([site.pk])
    ]
    measured = [line["drawn_w"] for line in lines if line["drawn_w"] is not None]
    return {
        "site": site.pk,
        "contracted_w": float(site.contracted_power_kw) * 1000,
        "budget_w": sum(line["budget_w"] for line in lines),
        "committed_w": sum(line["committed_w"] for line in lines),
        "drawn_w": sum(measured) if measured else None,
        "racks": lines,
    }
