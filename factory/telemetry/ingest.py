"""Telemetry ingest: one agent batch in, rows stored, health rules run, in one transaction.

The wire format (``factory.wire``, with an example there; what ``python -m factory.siteagent``
sends) is a list of Redfish MetricReports, a server's per-chip values in the report's OEM
section as one list per metric.

Each source numbers its reports; a report at or below the highest sequence already stored for
that source is a replay: acknowledged, not stored again. A batch that is malformed anywhere, or
names a server of another site, stores nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from factory import wire
from factory.core.limits import json_depth_exceeds, too_deep_message, too_large
from factory.inventory.models import Rack, UltraServer
from factory.telemetry import codec, faults
from factory.telemetry.choices import DeviceKind
from factory.telemetry.models import DeviceReading, ServerSample, ServerTelemetry, TelemetrySource
from factory.telemetry.rules import (
    Finding,
    Limits,
    chip_findings,
    coolant_findings,
    feed_findings,
)
from tenants.errors import Denied, Invalid

if TYPE_CHECKING:
    from factory.agents.models import SiteAgent

log = logging.getLogger(__name__)
OEM = wire.OEM
SOURCE, CHIPS, FEEDS = wire.ReportKey.SOURCE, wire.ReportKey.CHIPS, wire.ReportKey.FEEDS
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
REPORTS = wire.REPORTS


class BatchRejected(Invalid):
    """400 naming the offending part of the batch; nothing of the batch is stored."""

    def __init__(self, where: str, code: str, message: str) -> None:
        super().__init__(message, code=code, field=where)


class ForeignSource(Denied):
    """403: a report about a server at another site; nothing of the batch is stored."""

    default_code = "other_site"


@dataclass
class ServerReport:
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
    sequence: int
    ts: dt.datetime
    kind: str
    values: dict


@dataclass
class IngestResult:
    accepted: int = 0
    replayed: int = 0
    chip_samples: int = 0
    dropped_metrics: list[str] = field(default_factory=list)
    faults_opened: int = 0

    def as_dict(self) -> wire.IngestAnswer:
        return wire.IngestAnswer(
            accepted=self.accepted,
            replayed=self.replayed,
            chip_samples=self.chip_samples,
            dropped_metrics=self.dropped_metrics,
            faults_opened=self.faults_opened,
        )


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


def parse(body: bytes) -> list[tuple[str, dict]]:
    """Bytes → [(source, report)]; raises BatchRejected on any malformed part."""
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
    parsed = []
    for i, report in enumerate(reports):
        oem = report.get("Oem", {}).get(OEM) if isinstance(report, dict) else None
        source = oem.get(SOURCE) if isinstance(oem, dict) else None
        if not isinstance(source, str) or not source or len(source) > MAX_SOURCE_LENGTH:
            raise BatchRejected(
                f"{REPORTS}[{i}].Oem.{OEM}.{SOURCE}",
                "required",
                f"Each report names its source device (1 to {MAX_SOURCE_LENGTH} characters).",
            )
        parsed.append((source, report))
    return parsed


def _server_report(i: int, report: dict, server_id: int, chips: int) -> ServerReport:
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


def _device_report(i: int, source: str, report: dict) -> DeviceReport:
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
        return DeviceReport(source, sequence, ts, DeviceKind.PDU, {"feeds": feeds})
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
        sequence,
        ts,
        DeviceKind.CDU,
        {
            "supply_c": float(supply),
            "heat_w": float(heat) if isinstance(heat, int | float) else None,
        },
    )


# --- storing -------------------------------------------------------------------------------


def _accept_sequences(site_id: int, wanted: dict[str, list[int]]) -> dict[str, int]:
    """Lock each source's watermark and move it past this batch; returns the old watermarks
    (a report is new when its sequence is above its source's old watermark). Sources are
    locked in name order, so concurrent batches of one site cannot deadlock."""
    sources = sorted(wanted)
    highest = [max(wanted[source]) for source in sources]
    if connection.vendor != "postgresql":
        return _accept_sequences_portable(site_id, wanted)
    table = TelemetrySource._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (site_id, source, last_sequence, updated_at) "
            "SELECT %s, source, 0, now() FROM unnest(%s::text[]) AS source "
            "ON CONFLICT (site_id, source) DO NOTHING",
            [site_id, sources],
        )
        cursor.execute(
            f"SELECT source, last_sequence FROM {table} WHERE site_id = %s "
            "AND source = ANY(%s::text[]) ORDER BY source FOR UPDATE",
            [site_id, sources],
        )
        old = dict(cursor.fetchall())
        cursor.execute(
            f"UPDATE {table} AS t SET last_sequence = w.last, updated_at = now() "
            "FROM unnest(%s::text[], %s::bigint[]) AS w(source, last) "
            "WHERE t.site_id = %s AND t.source = w.source AND t.last_sequence < w.last",
            [sources, highest, site_id],
        )
    return old


def _accept_sequences_portable(site_id: int, wanted: dict[str, list[int]]) -> dict[str, int]:
    TelemetrySource.objects.bulk_create(
        [TelemetrySource(site_id=site_id, source=s, last_sequence=0) for s in wanted],
        ignore_conflicts=True,
    )
    rows = list(
        TelemetrySource.objects.select_for_update()
        .filter(site_id=site_id, source__in=list(wanted))
        .order_by("source")
        .values_list("pk", "source", "last_sequence")
    )
    old = {source: last for _, source, last in rows}
    changed = [
        TelemetrySource(
            pk=pk,
            site_id=site_id,
            source=source,
            last_sequence=max(wanted[source]),
            updated_at=timezone.now(),
        )
        for pk, source, last in rows
        if max(wanted[source]) > last
    ]
    if changed:
        TelemetrySource.objects.bulk_update(changed, ["last_sequence", "updated_at"])
    return old


def _copy_samples(reports: list[ServerReport]) -> None:
    rows = [
        (r.server_id, r.ts, r.chips, *(r.packed[m] for m in codec.METRICS), *r.aggregates)
        for r in reports
    ]
    if connection.vendor != "postgresql":
        ServerSample.objects.bulk_create(
            [ServerSample(**dict(zip(SAMPLE_COLUMNS, row, strict=True))) for row in rows],
            batch_size=200,
        )
        return
    table = ServerSample._meta.db_table
    connection.ensure_connection()
    with connection.cursor() as cursor:
        raw = cursor.cursor
        statement = f"COPY {table} ({', '.join(SAMPLE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        with raw.copy(statement) as copy:
            copy.set_types(SAMPLE_COPY_TYPES)
            for row in rows:
                copy.write_row(row)


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
        for r in newest.values()
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
    nothing stored."""
    parsed = parse(body)
    site_id = agent.site_id
    sources = {source for source, _ in parsed}
    servers = {
        serial: (pk, server_site, chips)
        for serial, pk, server_site, chips in UltraServer.objects.filter(
            serial__in=sources
        ).values_list("serial", "pk", "rack__site_id", "model__chip_count")
    }
    result = IngestResult()
    server_reports: list[tuple[str, ServerReport]] = []
    device_reports: list[DeviceReport] = []
    dropped: set[str] = set()
    for i, (source, report) in enumerate(parsed):
        if source in servers:
            pk, server_site, chips = servers[source]
            if server_site != site_id:
                raise ForeignSource(
                    f"{REPORTS}[{i}]: {source} is not at this agent's site; nothing was stored."
                )
            server_report = _server_report(i, report, pk, chips)
            _pack(i, server_report, allowed_categories, dropped)
            server_reports.append((source, server_report))
        elif CHIPS in report["Oem"][OEM]:
            raise BatchRejected(
                f"{REPORTS}[{i}].Oem.{OEM}.{SOURCE}",
                "unknown_source",
                f"No UltraServer {source!r} at this site.",
            )
        else:
            device_reports.append(_device_report(i, source, report))
    result.dropped_metrics = sorted(dropped)

    wanted: dict[str, list[int]] = {}
    for source, r in server_reports:
        wanted.setdefault(source, []).append(r.sequence)
    for d in device_reports:
        wanted.setdefault(d.source, []).append(d.sequence)
    received = timezone.now()
    with transaction.atomic():
        watermark = _accept_sequences(site_id, wanted)
        fresh = [r for source, r in server_reports if r.sequence > watermark.get(source, 0)]
        fresh_devices = [d for d in device_reports if d.sequence > watermark.get(d.source, 0)]
        result.accepted = len(fresh) + len(fresh_devices)
        result.replayed = len(parsed) - result.accepted
        result.chip_samples = sum(r.chips for r in fresh)
        findings: list[tuple[int, Finding]] = []
        if fresh:
            _copy_samples(fresh)
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
        site_findings = _store_devices(site_id, fresh_devices)
        result.faults_opened = faults.raise_findings(site_id, findings, site_findings)
    return result


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
