"""Telemetry ingest: one agent batch in, rows stored, health rules run, in one transaction.

The wire format (``factory.wire``, with an example there; what ``python -m factory.siteagent``
sends) is a list of Redfish MetricReports, a server's per-chip values in the report's OEM
section as one list per metric.

Each source numbers its reports within its agent's numbering epoch (``ReportEpoch``; "" for
agents older than epochs); a report at or below the highest sequence already accepted for that
source and epoch is a replay: acknowledged, not stored again. A new agent, a restarted one or a
second one for the site numbers in a new epoch, so its reports are never taken for replays.
Whatever the numbering, a server's sample at a device Timestamp already stored is a duplicate,
not stored again (a unique index and ``ON CONFLICT DO NOTHING``). A batch that is malformed
anywhere, or names a server of another site, stores nothing. Every report and chip sample is
counted by outcome (``metrics``).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from factory import wire
from factory.core.limits import json_depth_exceeds, too_deep_message, too_large
from factory.inventory import lifecycle
from factory.inventory.models import Rack, UltraServer
from factory.telemetry import codec, faults, metrics
from factory.telemetry.choices import DeviceKind
from factory.telemetry.models import (
    DeviceReading,
    Fault,
    RollupBacklog,
    ServerSample,
    ServerTelemetry,
    TelemetrySource,
)
from factory.telemetry.rules import (
    Finding,
    Limits,
    chip_findings,
    coolant_findings,
    feed_findings,
)
from tenants.errors import Denied, DomainError, Invalid

if TYPE_CHECKING:
    from factory.agents.models import SiteAgent

log = logging.getLogger(__name__)
OEM = wire.OEM
SOURCE, CHIPS, FEEDS = wire.ReportKey.SOURCE, wire.ReportKey.CHIPS, wire.ReportKey.FEEDS
EPOCH = wire.ReportKey.EPOCH
LEGACY_EPOCH = ""  # reports of agents older than epochs
SUPPLY, HEAT = wire.ReportKey.SUPPLY_TEMPERATURE, wire.ReportKey.HEAT_LOAD
POWER_W, UP = wire.FeedReading.POWER_W, wire.FeedReading.UP
FAILED = int(wire.HealthCode.FAILED)
M = wire.Metric
SAMPLE_COLUMNS = (
    "ultraserver_id",
    "ts",
    "chips",
    *codec.METRICS,
    "power_total_w",
    "temp_max_c",
    "temp_avg_c",
    "utilization_avg",
    "failed_chips",
)
#: PostgreSQL types of ``SAMPLE_COLUMNS``, in order, for binary COPY.
SAMPLE_COPY_TYPES = (
    "int8",
    "timestamptz",
    "int2",
    *(["bytea"] * len(codec.METRICS)),
    "float8",
    "float8",
    "float8",
    "float8",
    "int2",
)
RULE_METRICS = (M.HEALTH, M.ECC_UNCORRECTED, M.LINK_DOWN_S, M.THROTTLE_S)
MAX_SEQUENCE = 2**63 - 1  # PostgreSQL bigint
MAX_SOURCE_LENGTH = wire.MAX_SOURCE_LENGTH
MAX_EPOCH_LENGTH = wire.MAX_EPOCH_LENGTH
REPORTS = wire.REPORTS
#: Watermarks of epochs not heard from for this long are forgotten (``forget_epochs``): their
#: agent is gone, and a late report of one is still kept out by the duplicate rule.
EPOCH_RETENTION = dt.timedelta(days=7)
STALE = wire.FaultRule.TELEMETRY_STALE
#: PostgreSQL text cannot hold it: refused when parsed, naming the field, not by the database.
NUL = "\x00"


class BatchRejected(Invalid):
    """400 naming the offending part of the batch; nothing of the batch is stored."""

    def __init__(self, where: str, code: str, message: str) -> None:
        super().__init__(message, code=code, field=where)


class ForeignSource(Denied):
    """403: a report about a server at another site; nothing of the batch is stored."""

    default_code = "other_site"


@dataclass
class ServerReport:
    source: str
    epoch: str
    sequence: int
    ts: dt.datetime
    server_id: int
    chips: int
    metrics: dict[str, list | None]  # None: not shipped, or dropped by the egress rules
    packed: dict[str, bytes | None] = field(default_factory=dict)
    aggregates: tuple = ()


@dataclass
class DeviceReport:
    source: str
    epoch: str
    sequence: int
    ts: dt.datetime
    kind: str
    values: dict


@dataclass
class IngestResult:
    accepted: int = 0  # reports stored
    replayed: int = 0  # at or below their epoch's watermark
    duplicate: int = 0  # new in their epoch, but that sample (server, Timestamp) is stored
    chip_samples: int = 0  # stored
    replayed_chip_samples: int = 0
    duplicate_chip_samples: int = 0
    dropped_metrics: list[str] = field(default_factory=list)
    faults_opened: int = 0

    def as_dict(self) -> wire.IngestAnswer:
        """The agent's answer: to it a duplicate is one more report it need not send again."""
        return wire.IngestAnswer(
            accepted=self.accepted,
            replayed=self.replayed + self.duplicate,
            chip_samples=self.chip_samples,
            dropped_metrics=self.dropped_metrics,
            faults_opened=self.faults_opened,
        )


@dataclass
class _Refused:
    """What a refused batch held, as far as it was read (for the rejected counters)."""

    reports: int = 0
    chip_samples: int = 0


def limits() -> Limits:
    return Limits(
        link_down_seconds=settings.HEALTH_LINK_DOWN_SECONDS,
        throttle_seconds=settings.HEALTH_THROTTLE_SECONDS,
        coolant_max_c=settings.HEALTH_COOLANT_MAX_C,
    )


# --- parsing -------------------------------------------------------------------------------


def _timestamp(value: object, where: str) -> dt.datetime:
    if not isinstance(value, str):
        raise BatchRejected(where, "required", "Timestamp is required (ISO 8601 with zone).")
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BatchRejected(where, "invalid", f"{value!r} is not an ISO 8601 time.") from None
    if stamp.tzinfo is None:
        raise BatchRejected(where, "invalid", "Timestamp needs a time zone (e.g. Z).")
    return stamp


def _sequence(value: Any, where: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BatchRejected(where, "invalid", "ReportSequence must be a whole number.") from None
    if number < 1 or isinstance(value, bool):
        raise BatchRejected(where, "invalid", "ReportSequence starts at 1.")
    if number > MAX_SEQUENCE:
        raise BatchRejected(where, "invalid", f"ReportSequence is at most {MAX_SEQUENCE}.")
    return number


def parse(body: bytes, refused: _Refused | None = None) -> list[tuple[str, str, dict]]:
    """Bytes → [(source, epoch, report)]; raises BatchRejected on any malformed part (and
    notes in ``refused`` how many reports the batch held, once that is known)."""
    if len(body) > settings.TELEMETRY_MAX_BATCH_BYTES:
        raise too_large(len(body), settings.TELEMETRY_MAX_BATCH_BYTES)
    if json_depth_exceeds(body, settings.JSON_MAX_DEPTH):
        raise BatchRejected(REPORTS, "too_deep", too_deep_message(settings.JSON_MAX_DEPTH))
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BatchRejected(REPORTS, "parse_error", f"Body is not JSON: {exc}") from None
    reports = data.get(REPORTS) if isinstance(data, dict) else None
    if not isinstance(reports, list) or not reports:
        raise BatchRejected(REPORTS, "required", "A non-empty list of MetricReports.")
    if refused is not None:
        refused.reports = len(reports)
    parsed = []
    unnumbered: list[int] = []  # reports without an epoch
    for i, report in enumerate(reports):
        oem = report.get("Oem", {}).get(OEM) if isinstance(report, dict) else None
        source = oem.get(SOURCE) if isinstance(oem, dict) else None
        if not isinstance(source, str) or not source or len(source) > MAX_SOURCE_LENGTH:
            raise BatchRejected(
                f"{REPORTS}[{i}].Oem.{OEM}.{SOURCE}",
                "required",
                f"Each report names its source device (1 to {MAX_SOURCE_LENGTH} characters).",
            )
        if NUL in source:
            raise BatchRejected(
                f"{REPORTS}[{i}].Oem.{OEM}.{SOURCE}", "invalid", "A source holds no NUL character."
            )
        assert isinstance(oem, dict)  # a source was found in it
        epoch = oem.get(EPOCH)
        if epoch is None:
            unnumbered.append(i)
            epoch = LEGACY_EPOCH
        elif not isinstance(epoch, str) or len(epoch) > MAX_EPOCH_LENGTH or NUL in epoch:
            raise BatchRejected(
                f"{REPORTS}[{i}].Oem.{OEM}.{EPOCH}",
                "invalid",
                f"ReportEpoch is a string of at most {MAX_EPOCH_LENGTH} characters, no NUL.",
            )
        parsed.append((source, epoch, report))
    # An agent that numbers in epochs stamps every report (a legacy one: "" explicitly); one
    # report without is a broken agent whose numbers would be judged against the wrong epoch.
    if unnumbered and len(unnumbered) < len(parsed):
        raise BatchRejected(
            f"{REPORTS}[{unnumbered[0]}].Oem.{OEM}.{EPOCH}",
            "epoch_required",
            "Other reports of this batch carry a ReportEpoch; every report must.",
        )
    return parsed


def _server_report(
    i: int, source: str, epoch: str, report: dict, server_id: int, chips: int
) -> ServerReport:
    where = f"{REPORTS}[{i}]"
    values = report["Oem"][OEM].get(CHIPS)
    if not isinstance(values, dict) or not values:
        raise BatchRejected(
            f"{where}.Oem.{OEM}.{CHIPS}", "required", "Per-chip metrics, one list per metric."
        )
    for metric, column in values.items():
        if metric not in codec.CODES:
            raise BatchRejected(
                f"{where}.Oem.{OEM}.{CHIPS}.{metric}",
                "unknown_metric",
                f"Unknown metric; known: {', '.join(codec.METRICS)}.",
            )
        if not isinstance(column, list) or len(column) != chips:
            raise BatchRejected(
                f"{where}.Oem.{OEM}.{CHIPS}.{metric}",
                "wrong_length",
                f"Expected one value for each of the server's {chips} chips.",
            )
    return ServerReport(
        source=source,
        epoch=epoch,
        sequence=_sequence(report.get("ReportSequence"), f"{where}.ReportSequence"),
        ts=_timestamp(report.get("Timestamp"), f"{where}.Timestamp"),
        server_id=server_id,
        chips=chips,
        metrics=values,
    )


def _pack(i: int, report: ServerReport, allowed: frozenset[str], dropped: set[str]) -> None:
    for metric in codec.METRICS:
        column = report.metrics.get(metric)
        if column is not None and codec.CATEGORY_OF[metric] not in allowed:
            dropped.add(metric)
            column = None
            report.metrics[metric] = None
        try:
            report.packed[metric] = None if column is None else codec.pack(metric, column)
        except (TypeError, OverflowError):
            kind = "whole numbers" if wire.METRICS[metric].type.integral else "numbers"
            raise BatchRejected(
                f"{REPORTS}[{i}].Oem.{OEM}.{CHIPS}.{metric}", "invalid", f"Values must be {kind}."
            ) from None
    m = report.metrics
    power, temp, util, health = (
        m.get(M.POWER_W),
        m.get(M.TEMP_C),
        m.get(M.UTILIZATION),
        m.get(M.HEALTH),
    )
    report.aggregates = (
        float(sum(power)) if power else None,
        float(max(temp)) if temp else None,
        float(sum(temp)) / len(temp) if temp else None,
        float(sum(util)) / len(util) if util else None,
        sum(1 for h in health if h >= FAILED) if health else 0,
    )


def _device_report(i: int, source: str, epoch: str, report: dict) -> DeviceReport:
    where = f"{REPORTS}[{i}]"
    oem = report["Oem"][OEM]
    sequence = _sequence(report.get("ReportSequence"), f"{where}.ReportSequence")
    ts = _timestamp(report.get("Timestamp"), f"{where}.Timestamp")
    if FEEDS in oem:
        feeds = oem[FEEDS]
        if not isinstance(feeds, dict) or not all(
            isinstance(v, dict)
            and isinstance(v.get(POWER_W), int | float)
            and isinstance(v.get(UP), bool)
            for v in feeds.values()
        ):
            raise BatchRejected(
                f"{where}.Oem.{OEM}.{FEEDS}",
                "invalid",
                "Feeds: {feed name: {power_w: number, up: bool}}.",
            )
        return DeviceReport(source, epoch, sequence, ts, DeviceKind.PDU, {"feeds": feeds})
    supply = oem.get(SUPPLY)
    if not isinstance(supply, int | float) or isinstance(supply, bool):
        raise BatchRejected(
            f"{where}.Oem.{OEM}",
            "invalid",
            "A report carries Chips (BMC), Feeds (PDU) or SupplyTemperatureCelsius (CDU).",
        )
    heat = oem.get(HEAT)
    return DeviceReport(
        source,
        epoch,
        sequence,
        ts,
        DeviceKind.CDU,
        {
            "supply_c": float(supply),
            "heat_w": float(heat) if isinstance(heat, int | float) else None,
        },
    )


# --- storing -------------------------------------------------------------------------------


Stream = tuple[str, str]  # (source, epoch): what one watermark counts


def _accept_sequences(site_id: int, wanted: dict[Stream, list[int]]) -> dict[Stream, int]:
    """Lock each (source, epoch) watermark and move it past this batch; returns the old
    watermarks (a report is new when its sequence is above its stream's old watermark).
    Streams are locked in (source, epoch) order, so concurrent batches of one site cannot
    deadlock. Three statements whatever the batch."""
    if connection.vendor != "postgresql":
        return _accept_sequences_portable(site_id, wanted)
    streams = sorted(wanted)
    sources = [source for source, _ in streams]
    epochs = [epoch for _, epoch in streams]
    highest = [max(wanted[stream]) for stream in streams]
    table = TelemetrySource._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (site_id, source, epoch, last_sequence, updated_at) "
            "SELECT %s, w.source, w.epoch, 0, now() "
            "FROM unnest(%s::text[], %s::text[]) AS w(source, epoch) "
            "ON CONFLICT (site_id, source, epoch) DO NOTHING",
            [site_id, sources, epochs],
        )
        cursor.execute(
            f"SELECT t.source, t.epoch, t.last_sequence FROM {table} AS t "
            "JOIN unnest(%s::text[], %s::text[]) AS w(source, epoch) "
            "ON t.source = w.source AND t.epoch = w.epoch "
            "WHERE t.site_id = %s ORDER BY t.source, t.epoch FOR UPDATE OF t",
            [sources, epochs, site_id],
        )
        old = {(source, epoch): last for source, epoch, last in cursor.fetchall()}
        # Every stream heard is touched (updated_at: when it was last heard, for pruning).
        cursor.execute(
            f"UPDATE {table} AS t SET last_sequence = GREATEST(t.last_sequence, w.last), "
            "updated_at = now() "
            "FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS w(source, epoch, last) "
            "WHERE t.site_id = %s AND t.source = w.source AND t.epoch = w.epoch",
            [sources, epochs, highest, site_id],
        )
    return old


def _accept_sequences_portable(site_id: int, wanted: dict[Stream, list[int]]) -> dict[Stream, int]:
    TelemetrySource.objects.bulk_create(
        [
            TelemetrySource(site_id=site_id, source=source, epoch=epoch, last_sequence=0)
            for source, epoch in wanted
        ],
        ignore_conflicts=True,
    )
    rows = [
        row
        for row in TelemetrySource.objects.select_for_update()
        .filter(site_id=site_id, source__in=sorted({source for source, _ in wanted}))
        .order_by("source", "epoch")
        .values_list("pk", "source", "epoch", "last_sequence")
        if (row[1], row[2]) in wanted
    ]
    old = {(source, epoch): last for _, source, epoch, last in rows}
    now = timezone.now()
    TelemetrySource.objects.bulk_update(
        [
            TelemetrySource(
                pk=pk,
                site_id=site_id,
                source=source,
                epoch=epoch,
                last_sequence=max(last, *wanted[(source, epoch)]),
                updated_at=now,
            )
            for pk, source, epoch, last in rows
        ],
        ["last_sequence", "updated_at"],
    )
    return old


def forget_epochs(now: dt.datetime | None = None) -> int:
    """Watermarks of streams not heard from for ``EPOCH_RETENTION``, deleted (an agent's every
    start leaves one per source). Returns how many."""
    cutoff = (now or timezone.now()) - EPOCH_RETENTION
    deleted, _ = TelemetrySource.objects.filter(updated_at__lt=cutoff).delete()
    return deleted


def _insert_samples(reports: list[ServerReport]) -> list[ServerReport]:
    """Store each report's sample unless one of the same server and Timestamp is stored
    already (or earlier in the batch): one set-based statement whatever the batch. Rows go in
    (server, Timestamp) order, so two agents' batches at once take the unique index's locks in
    the same order and cannot deadlock. Returns the reports stored."""
    reports = sorted(reports, key=lambda r: (r.server_id, r.ts))
    rows = [
        (r.server_id, r.ts, r.chips, *(r.packed[m] for m in codec.METRICS), *r.aggregates)
        for r in reports
    ]
    if connection.vendor != "postgresql":
        return _insert_samples_portable(reports, rows)
    table = ServerSample._meta.db_table
    arrays = ", ".join(f"%b::{t}[]" for t in SAMPLE_COPY_TYPES)
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(SAMPLE_COLUMNS)}) SELECT * FROM unnest({arrays}) "
            "ON CONFLICT (ultraserver_id, ts) DO NOTHING RETURNING ultraserver_id, ts",
            [list(column) for column in zip(*rows, strict=True)],
            binary=True,
        )
        inserted = set(cursor.fetchall())
    stored = []
    for r in reports:
        key = (r.server_id, r.ts)
        if key in inserted:
            inserted.discard(key)  # a second report of that sample in the batch is a duplicate
            stored.append(r)
    return stored


#: A sample whose Timestamp is this far behind its arrival is late (a spooled agent catching
#: up): its minute is noted in ``RollupBacklog``, since the roll-up reads only recent rows.
LATE_AFTER = dt.timedelta(minutes=2)


def _note_late(stored: list[ServerReport], received: dt.datetime) -> None:
    late = {
        (r.server_id, r.ts.astimezone(dt.UTC).replace(second=0, microsecond=0))
        for r in stored
        if r.ts < received - LATE_AFTER
    }
    if late:
        RollupBacklog.objects.bulk_create(
            [RollupBacklog(ultraserver_id=s, bucket=b) for s, b in sorted(late)],
            ignore_conflicts=True,
        )


def _insert_samples_portable(reports: list[ServerReport], rows: list[tuple]) -> list[ServerReport]:
    existing = set(
        ServerSample.objects.filter(
            ultraserver_id__in={r.server_id for r in reports}, ts__in={r.ts for r in reports}
        ).values_list("ultraserver_id", "ts")
    )
    stored, new_rows = [], []
    for r, row in zip(reports, rows, strict=True):
        if (r.server_id, r.ts) not in existing:
            existing.add((r.server_id, r.ts))
            stored.append(r)
            new_rows.append(row)
    ServerSample.objects.bulk_create(
        [ServerSample(**dict(zip(SAMPLE_COLUMNS, row, strict=True))) for row in new_rows],
        batch_size=200,
    )
    return stored


LATEST_COLUMNS = (
    "ultraserver_id",
    "ts",
    "chips",
    "received_at",
    *SAMPLE_COLUMNS[3:],
    "link_outage_s",
)
_LATEST_TYPES = (
    "int8",
    "timestamptz",
    "int2",
    "timestamptz",
    *(["bytea"] * len(codec.METRICS)),
    "float8",
    "float8",
    "float8",
    "float8",
    "int2",
    "bytea",
)
STATE_METRICS = (*RULE_METRICS, "link_outage_s")  # what the rules carry from sample to sample


def _previous(server_ids: list[int]) -> dict[int, dict]:
    """The latest state's rule metrics per server: what the rules compare against."""
    if connection.vendor != "postgresql":
        return {
            row["ultraserver_id"]: {m: codec.unpack(m, row[m]) for m in STATE_METRICS}
            for row in ServerTelemetry.objects.filter(pk__in=server_ids).values(
                "ultraserver_id", *STATE_METRICS
            )
        }
    # Binary results: Django's cursor would hand every bytea back as text to decode.
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            f"SELECT ultraserver_id, {', '.join(STATE_METRICS)} "
            f"FROM {ServerTelemetry._meta.db_table} WHERE ultraserver_id = ANY(%s)",
            [server_ids],
            binary=True,
        )
        return {
            row[0]: {m: codec.unpack(m, v) for m, v in zip(STATE_METRICS, row[1:], strict=True)}
            for row in cursor.fetchall()
        }


def _store_latest(
    reports: list[ServerReport], received: dt.datetime, outages: dict[int, list | None]
) -> None:
    """Keep the newest report per server as its latest state, never replacing a newer one."""
    newest: dict[int, ServerReport] = {}
    for r in reports:
        if r.server_id not in newest or r.ts >= newest[r.server_id].ts:
            newest[r.server_id] = r
    rows = [
        (
            r.server_id,
            r.ts,
            r.chips,
            received,
            *(r.packed[m] for m in codec.METRICS),
            *r.aggregates,
            None
            if (outage := outages.get(r.server_id)) is None
            else codec.pack("link_outage_s", outage),
        )
        for r in sorted(newest.values(), key=lambda r: r.server_id)  # lock order: no deadlock
    ]
    table = ServerTelemetry._meta.db_table
    if connection.vendor != "postgresql":
        ServerTelemetry.objects.bulk_create(
            [ServerTelemetry(**dict(zip(LATEST_COLUMNS, row, strict=True))) for row in rows],
            update_conflicts=True,
            unique_fields=["ultraserver"],
            update_fields=list(LATEST_COLUMNS[1:]),
        )
        return
    # PostgreSQL: one set-based upsert whatever the batch size, parameters in binary.
    arrays = ", ".join(f"%b::{t}[]" for t in _LATEST_TYPES)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in LATEST_COLUMNS[1:])
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(LATEST_COLUMNS)}) SELECT * FROM unnest({arrays}) "
            f"ON CONFLICT (ultraserver_id) DO UPDATE SET {updates} "
            f"WHERE {table}.ts <= EXCLUDED.ts",
            [list(column) for column in zip(*rows, strict=True)],
            binary=True,
        )


def ingest(agent: SiteAgent, body: bytes, allowed_categories: frozenset[str]) -> IngestResult:
    """Store one batch from ``agent``. Raises BatchRejected (400) or ForeignSource (403) with
    nothing stored. Counts its reports and chip samples by outcome, or by the refusal's
    reason; then, at most once per report interval per site, looks for servers gone silent
    while this agent reports (``check_freshness``)."""
    site = agent.site.code
    refused = _Refused()
    try:
        result = _ingest(agent, body, allowed_categories, refused)
    except DomainError as refusal:
        metrics.count_refused_reports(site, refusal.code, refused.reports, refused.chip_samples)
        raise
    metrics.count_reports(
        site,
        stored=(result.accepted, result.chip_samples),
        replayed=(result.replayed, result.replayed_chip_samples),
        duplicate=(result.duplicate, result.duplicate_chip_samples),
    )
    _check_freshness_now_and_then(agent.site_id)
    return result


def _ingest(
    agent: SiteAgent, body: bytes, allowed_categories: frozenset[str], refused: _Refused
) -> IngestResult:
    parsed = parse(body, refused)
    site_id = agent.site_id
    sources = {source for source, _, _ in parsed}
    servers = {
        serial: (pk, server_site, chips)
        for serial, pk, server_site, chips in UltraServer.objects.filter(
            serial__in=sources
        ).values_list("serial", "pk", "rack__site_id", "model__chip_count")
    }
    refused.chip_samples = sum(servers[source][2] for source, _, _ in parsed if source in servers)
    result = IngestResult()
    server_reports: list[ServerReport] = []
    device_reports: list[DeviceReport] = []
    dropped: set[str] = set()
    for i, (source, epoch, report) in enumerate(parsed):
        if source in servers:
            pk, server_site, chips = servers[source]
            if server_site != site_id:
                raise ForeignSource(
                    f"{REPORTS}[{i}]: {source} is not at this agent's site; nothing was stored."
                )
            server_report = _server_report(i, source, epoch, report, pk, chips)
            _pack(i, server_report, allowed_categories, dropped)
            server_reports.append(server_report)
        elif CHIPS in report["Oem"][OEM]:
            raise BatchRejected(
                f"{REPORTS}[{i}].Oem.{OEM}.{SOURCE}",
                "unknown_source",
                f"No UltraServer {source!r} at this site.",
            )
        else:
            device_reports.append(_device_report(i, source, epoch, report))
    result.dropped_metrics = sorted(dropped)

    wanted: dict[Stream, list[int]] = {}
    numbering: list[ServerReport | DeviceReport] = [*server_reports, *device_reports]
    for r in numbering:
        wanted.setdefault((r.source, r.epoch), []).append(r.sequence)
    received = timezone.now()
    with transaction.atomic():
        watermark = _accept_sequences(site_id, wanted)

        def new(r: ServerReport | DeviceReport) -> bool:
            return r.sequence > watermark.get((r.source, r.epoch), 0)

        numbered = [r for r in server_reports if new(r)]
        fresh_devices = [d for d in device_reports if new(d)]
        fresh = _insert_samples(numbered) if numbered else []
        _note_late(fresh, received)
        result.accepted = len(fresh) + len(fresh_devices)
        result.duplicate = len(numbered) - len(fresh)
        result.replayed = len(parsed) - len(numbered) - len(fresh_devices)
        result.chip_samples = sum(r.chips for r in fresh)
        result.duplicate_chip_samples = sum(r.chips for r in numbered) - result.chip_samples
        result.replayed_chip_samples = sum(r.chips for r in server_reports) - sum(
            r.chips for r in numbered
        )
        findings: list[tuple[int, Finding]] = []
        if fresh:
            previous = _previous(sorted({r.server_id for r in fresh}))
            rule_limits = limits()
            outages: dict[int, list | None] = {}
            for r in sorted(fresh, key=lambda r: r.ts):
                state = {m: r.metrics.get(m) for m in RULE_METRICS}
                found, outages[r.server_id] = chip_findings(
                    state, previous.get(r.server_id), rule_limits
                )
                previous[r.server_id] = {**state, "link_outage_s": outages[r.server_id]}
                findings.extend((r.server_id, f) for f in found)
            _store_latest(fresh, received, outages)
            _heard_from(sorted({r.server_id for r in fresh}), received)
        site_findings = _store_devices(site_id, fresh_devices)
        result.faults_opened = faults.raise_findings(site_id, findings, site_findings)
    return result


#: ``UltraServer.last_heartbeat_at`` is written at most this often per server: the exact
#: time of the newest sample is ``ServerTelemetry.received_at`` (what the freshness rule and
#: the console read); the server row only says "heard from lately", without a write per batch.
HEARTBEAT_EVERY = dt.timedelta(seconds=60)


def _heard_from(server_ids: list[int], received: dt.datetime) -> None:
    """``last_heartbeat_at`` of the servers with a new sample in this batch, where it is
    ``HEARTBEAT_EVERY`` old or more (or never written): one set-based UPDATE that touches no
    row most of the time, never moving it backwards. Taken after ``_store_latest`` has locked
    the same servers' latest rows in id order, so two batches cannot deadlock here."""
    UltraServer.objects.filter(pk__in=server_ids).filter(
        Q(last_heartbeat_at__isnull=True) | Q(last_heartbeat_at__lt=received - HEARTBEAT_EVERY)
    ).order_by().update(last_heartbeat_at=received)


# --- freshness: a server silent while its site's agent reports ----------------------------


def stale_after() -> dt.timedelta:
    """How long a server may send nothing, while its agent reports, before it is a fault:
    ``TELEMETRY_STALE_AFTER_SECONDS``, or six report intervals (at least 30 s)."""
    configured = getattr(settings, "TELEMETRY_STALE_AFTER_SECONDS", None)
    seconds = (
        float(configured)
        if configured
        else max(30.0, 6 * float(settings.TELEMETRY_INTERVAL_SECONDS))
    )
    return dt.timedelta(seconds=seconds)


def check_freshness(site_id: int, now: dt.datetime | None = None) -> tuple[int, int]:
    """A ``telemetry-stale`` fault on each server of the site that has reported before but
    not for ``stale_after()`` (decommissioned servers aside); cleared on those whose samples
    came back. Call it only for a site whose agent is heard from (ingest does, for the agent
    that posts): a silent agent is the ``agent-silent`` fault instead. Returns (opened,
    cleared). A fixed number of queries when nothing changes.

    Silent is judged against what the agents have delivered, not only against the clock: a
    server is stale only if its newest sample is also ``stale_after()`` older than the newest
    sample delivered for the site. After an outage the outbox's backlog arrives oldest first,
    in batches of a fraction of one interval: a server not yet in the delivered part of the
    backlog is behind, not silent."""
    now = now or timezone.now()
    limit = stale_after()
    site_rows = ServerTelemetry.objects.filter(ultraserver__rack__site_id=site_id)
    delivered = site_rows.aggregate(newest=Max("ts"))["newest"]
    if delivered is None:
        return 0, 0
    silent = dict(
        site_rows.filter(received_at__lt=now - limit, ts__lt=delivered - limit)
        .exclude(ultraserver__lifecycle_state=lifecycle.DECOMMISSIONED)
        .values_list("ultraserver_id", "received_at")
    )
    flagged = set(
        Fault.objects.filter(
            site_id=site_id, rule=STALE, cleared_at__isnull=True, ultraserver__isnull=False
        ).values_list("ultraserver_id", flat=True)
    )
    findings = [
        (
            server_id,
            Finding(
                STALE,
                f"no telemetry for {(now - at).total_seconds():.0f} s "
                f"(limit {limit.total_seconds():.0f} s) while the site agent reports",
            ),
        )
        for server_id, at in sorted(silent.items())
        if server_id not in flagged
    ]
    back = [faults.server_key(STALE, server_id, None) for server_id in flagged - silent.keys()]
    with transaction.atomic():
        opened = faults.raise_findings(site_id, findings, []) if findings else 0
        cleared = faults.clear_keys(site_id, back, "telemetry arrives again")
    return opened, cleared


def _check_freshness_now_and_then(site_id: int) -> None:
    """``check_freshness`` at most once per report interval per site, whichever web process
    takes the batch (a key in the shared cache). Best effort: a check that fails is logged and
    the batch, already stored, is still acknowledged."""
    period = max(1, math.ceil(float(settings.TELEMETRY_INTERVAL_SECONDS)))
    try:
        if cache.add(f"telemetry-freshness:{site_id}", 1, timeout=period):
            check_freshness(site_id)
    except Exception:
        log.exception("telemetry freshness check of site %s failed", site_id)


def _store_devices(site_id: int, reports: list[DeviceReport]) -> list[Finding]:
    """Latest reading per device; feed and coolant rules (their faults clear themselves when
    the condition ends)."""
    if not reports:
        return []
    newest: dict[str, DeviceReport] = {}
    for d in reports:
        if d.source not in newest or d.ts >= newest[d.source].ts:
            newest[d.source] = d
    racks = {
        r.name: r
        for r in Rack.objects.filter(
            site_id=site_id, name__in=[wire.rack_of_pdu(d.source) for d in newest.values()]
        )
    }
    readings = []
    for d in newest.values():
        rack = racks.get(wire.rack_of_pdu(d.source)) if d.kind == DeviceKind.PDU else None
        readings.append(
            DeviceReading(
                site_id=site_id, source=d.source, kind=d.kind, ts=d.ts, values=d.values, rack=rack
            )
        )
    DeviceReading.objects.bulk_create(
        readings,
        update_conflicts=True,
        unique_fields=["site", "source"],
        update_fields=["kind", "ts", "values", "rack"],
    )
    findings: list[Finding] = []
    healthy: list[str] = []
    for d in newest.values():
        if d.kind == DeviceKind.PDU:
            findings.extend(feed_findings(d.values["feeds"]))
            healthy.extend(
                faults.site_key(wire.FaultRule.FEED_LOSS, name)
                for name, v in d.values["feeds"].items()
                if v.get(UP)
            )
        else:
            found = coolant_findings(d.source, d.values["supply_c"], limits())
            findings.extend(found)
            if not found:
                healthy.append(faults.site_key(wire.FaultRule.COOLANT_EXCURSION, d.source))
    faults.clear_keys(site_id, healthy, "condition ended")
    return findings
