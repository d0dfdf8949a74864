"""What each console page shows, in a fixed number of queries per page (no N+1)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from factory.inventory.models import Chip, ChipCounts, PowerFeed, Rack, Site, UltraServer
from factory.inventory.power import kw
from factory.inventory.selectors import chip_counts_by
from factory.telemetry import codec
from factory.telemetry.choices import DeviceKind, FaultSeverity
from factory.telemetry.models import (
    DeviceReading,
    Fault,
    ServerRollup,
    ServerSample,
    ServerTelemetry,
)
from factory.telemetry.services import rack_power
from factory.wire import FeedReading, Metric
from provisioning.choices import ACTIVE_WORKFLOW_STATES
from provisioning.console import charts, freshness
from provisioning.console.charts import heat_class, percent
from provisioning.console.server_history import touches as server_touches
from provisioning.models import Workflow, WorkflowTarget
from tenants.access import Actor, scope_queryset
from tenants.models import AuditEvent

SITE_TENANT = ("tenant",)
#: The most raw samples one chart reads (the newest).
RAW_POINTS = 2000
SERVER_TENANT = ("rack__site__tenant", "tenant")


def sites_for(actor: Actor) -> QuerySet[Site]:
    return scope_queryset(Site.objects.select_related("tenant"), actor, SITE_TENANT)


def servers_for(actor: Actor) -> QuerySet[UltraServer]:
    return scope_queryset(
        UltraServer.objects.select_related("model__chip_model", "rack__site"), actor, SERVER_TENANT
    )


def workflows_for(actor: Actor) -> QuerySet[Workflow]:
    return scope_queryset(Workflow.objects.select_related("site"), actor, ("site__tenant",))


def fleet(actor: Actor) -> list[dict]:
    sites = list(sites_for(actor).order_by("code"))
    ids = [s.pk for s in sites]
    power = defaultdict(list)
    for line in rack_power(ids):
        power[line.rack.site_id].append(line)
    chips = chip_counts_by(
        "ultraserver__rack__site_id",
        ChipCounts.objects.filter(ultraserver__rack__site_id__in=ids),
    )
    active = dict(
        Workflow.objects.filter(site_id__in=ids, state__in=ACTIVE_WORKFLOW_STATES)
        .values_list("site_id")
        .annotate(n=Count("pk"))
        .values_list("site_id", "n")
    )
    faults = dict(
        Fault.objects.filter(site_id__in=ids, cleared_at__isnull=True)
        .values_list("site_id")
        .annotate(n=Count("pk"))
        .values_list("site_id", "n")
    )
    fresh = freshness.of_sites(ids)
    rows = []
    for site in sites:
        racks = power[site.pk]
        budget = sum(line.budget_w for line in racks)
        drawn = sum(line.drawn_w or 0.0 for line in racks)
        site_committed = sum(line.committed_w for line in racks)
        contracted = float(site.contracted_power_kw) * 1000
        cooling = float(site.contracted_cooling_kw) * 1000
        counts = chips[site.pk]
        rows.append(
            {
                "site": site,
                "contracted_w": contracted,
                "budget_w": budget,
                "committed_w": site_committed,
                "drawn_w": drawn,
                "committed_pct": percent(site_committed, contracted),
                "budget_pct": percent(budget, contracted),
                "drawn_pct": percent(drawn, contracted),
                "cooling_w": cooling,
                "cooling_pct": percent(site_committed, cooling),
                "power_text": f"{kw(drawn)} drawn · {kw(site_committed)} committed · "
                f"{kw(budget)} budget · {kw(contracted)} contracted",
                "cooling_text": f"{kw(site_committed)} committed of {kw(cooling)}",
                "chips_ok": counts.get("ok", 0),
                "chips_failed": counts.get("failed", 0),
                "chips_other": sum(n for h, n in counts.items() if h not in ("ok", "failed")),
                "active_workflows": active.get(site.pk, 0),
                "open_faults": faults.get(site.pk, 0),
                "freshness": fresh[site.pk],
            }
        )
    return rows


def site_page(site: Site) -> dict:
    servers = defaultdict(list)
    failed = dict(
        Chip.objects.filter(ultraserver__rack__site=site, health="failed")
        .values_list("ultraserver_id")
        .annotate(n=Count("pk"))
        .values_list("ultraserver_id", "n")
    )
    held = dict(
        WorkflowTarget.objects.filter(ultraserver__rack__site=site, active=True).values_list(
            "ultraserver_id", "workflow__kind"
        )
    )
    for server in (
        UltraServer.objects.filter(rack__site=site).select_related("model").order_by("-position")
    ):
        n_failed = failed.get(server.pk, 0)
        health = "bad" if n_failed or server.in_maintenance else "ok"
        if server.unreachable_since:
            health = "unknown"
        servers[server.rack_id].append(
            {
                "server": server,
                "failed_chips": n_failed,
                "health": health,
                "workflow": held.get(server.pk),
            }
        )
    columns = []
    for line in rack_power([site.pk]):
        rack, committed = line.rack, line.committed_w
        paths = []
        for path in ("A", "B"):
            on_path = [f for f in line.feeds if f.path == path]
            capacity = sum(f.capacity_watts for f in on_path)
            drawn = sum(line.drawn_by_feed.get(f.name, 0.0) for f in on_path)
            paths.append(
                {
                    "path": path,
                    "feeds": ", ".join(f.name for f in on_path) or "none",
                    "capacity_w": capacity,
                    "drawn_w": drawn,
                    "drawn_pct": percent(drawn, capacity),
                    "committed_pct": percent(committed, capacity),
                    "text": f"{kw(drawn)} drawn of {kw(capacity)} · {kw(committed)} committed",
                }
            )
        cooling_w = float(rack.cooling_capacity_kw) * 1000
        columns.append(
            {
                "rack": rack,
                "paths": paths,
                "cooling_w": cooling_w,
                "committed_w": committed,
                "cooling_pct": percent(committed, cooling_w),
                "cooling_text": f"{kw(committed)} committed of {kw(cooling_w)}",
                "servers": servers[rack.pk],
            }
        )
    return {
        "racks": columns,
        "site_freshness": freshness.of_sites([site.pk])[site.pk],
        "freshness": freshness.of_servers(site),
    }


def rack_page(rack: Rack) -> dict:
    """One rack's elevation: every U from the top down, each server at its position and
    height with its state and measured power against its rating, and the rack's feeds.
    Reads this rack only (a fixed number of queries, whatever the site's size)."""
    servers = list(
        UltraServer.objects.filter(rack=rack)
        .select_related("model__chip_model")
        .order_by("-position")
    )
    ids = [s.pk for s in servers]
    drawn = dict(
        ServerTelemetry.objects.filter(ultraserver_id__in=ids).values_list(
            "ultraserver_id", "power_total_w"
        )
    )
    failed = dict(
        Chip.objects.filter(ultraserver_id__in=ids, health="failed")
        .values_list("ultraserver_id")
        .annotate(n=Count("pk"))
        .values_list("ultraserver_id", "n")
    )
    held = dict(
        WorkflowTarget.objects.filter(ultraserver_id__in=ids, active=True).values_list(
            "ultraserver_id", "workflow__kind"
        )
    )
    placed = []
    for server in servers:
        rated = float(server.model.max_power_w)
        measured = drawn.get(server.pk)
        n_failed = failed.get(server.pk, 0)
        health = "bad" if n_failed or server.in_maintenance else "ok"
        if server.unreachable_since:
            health = "unknown"
        placed.append(
            (
                server.position or 1,
                server.model.rack_units,
                {
                    "server": server,
                    "failed_chips": n_failed,
                    "health": health,
                    "workflow": held.get(server.pk),
                    "rated_w": rated,
                    "drawn_w": measured,
                    "drawn_pct": percent(measured, rated),
                    "power_text": (
                        f"{kw(measured)} of {kw(rated)} rated"
                        if measured is not None
                        else f"no reading · {kw(rated)} rated"
                    ),
                },
            )
        )
    slots = [
        {
            "top": slot.top_u,
            "height": slot.height_u,
            "bottom": slot.top_u - slot.height_u + 1,
            "s": slot.item,
        }
        for slot in charts.elevation(rack.u_height, placed)
    ]
    feeds = list(PowerFeed.objects.filter(rack=rack).order_by("path", "name"))
    reading = DeviceReading.objects.filter(rack=rack, kind=DeviceKind.PDU).first()
    values = reading.values.get("feeds", {}) if reading else {}
    feed_rows = []
    for feed in feeds:
        v = values.get(feed.name)
        up = bool(v.get(FeedReading.UP)) if v else None
        watts = float(v.get(FeedReading.POWER_W, 0.0)) if v and up else (0.0 if v else None)
        feed_rows.append(
            {
                "feed": feed,
                "up": up,
                "drawn_w": watts,
                "drawn_pct": percent(watts, feed.capacity_watts),
                "text": (
                    f"{kw(watts)} of {kw(feed.capacity_watts)}"
                    if watts is not None
                    else f"no reading · {kw(feed.capacity_watts)}"
                ),
            }
        )
    committed = sum(float(s.model.max_power_w) for s in servers)
    measured_total = [d for d in (drawn.get(s.pk) for s in servers) if d is not None]
    return {
        "elevation": slots,
        "feeds": feed_rows,
        "pdu_at": reading.ts if reading else None,
        "committed_w": committed,
        "servers_drawn_w": sum(measured_total) if measured_total else None,
        "committed_text": kw(committed),
        "servers_text": (
            f"{kw(sum(measured_total))} ({len(measured_total)} of {len(servers)} reporting)"
            if measured_total
            else "no reading"
        ),
        "server_count": len(servers),
        "used_u": sum(s.model.rack_units for s in servers),
    }


HEAT_METRICS = {"health": "Health", "temp": "Temperature", "util": "Utilization"}


def heatmap(server: UltraServer, metric: str, latest: ServerTelemetry | None) -> dict:
    """The chips in the model's physical layout (a row per tray), each coloured on a
    continuous scale for ``metric``; a chip without a value is a "no data" cell, never a
    number."""
    temps = codec.unpack(Metric.TEMP_C, latest.temp_c) if latest else None
    utils = codec.unpack(Metric.UTILIZATION, latest.utilization) if latest else None
    low, high, unit = charts.SCALES.get(metric, (0.0, 0.0, ""))
    cells: dict[int, dict] = {}
    failed = 0
    # ``ultraserver_id`` too: the related manager reads it on each chip, a query per chip
    # when deferred (157 queries for a Trn3 page).
    chips = server.chips.order_by("index")
    for chip in chips.only("ultraserver_id", "index", "health", "serial", "health_note"):
        temp = temps[chip.index] if temps and chip.index < len(temps) else None
        util = utils[chip.index] if utils and chip.index < len(utils) else None
        if util is not None:
            util = util * 100
        value = {"temp": temp, "util": util}.get(metric)
        css = heat_class(metric, value, chip.health)
        background, ink = charts.ramp(value, low, high) if value is not None else ("", "")
        if metric == "health":
            label = chip.health
        elif value is None:
            label = "no data"
        else:
            label = f"{value:.0f}{'°' if metric == 'temp' else '%'}"
        if chip.health == "failed":
            failed += 1
        cells[chip.index] = {
            "chip": chip,
            "css": css,
            "label": label,
            "value": value,
            "style": f"background:{background};color:{ink}" if background else "",
            "temp": temp,
            "util": util,
        }
    per = server.model.chips_per_tray
    rows = [
        {"tray": tray, "cells": [cells[i] if i is not None else None for i in slots]}
        for tray, slots in charts.trays(sorted(cells), per)
    ]
    low_ink = charts.ramp(low, low, high) if unit else ("", "")
    high_ink = charts.ramp(high, low, high) if unit else ("", "")
    return {
        "chips": list(cells.values()),
        "trays": rows,
        "chips_per_tray": per,
        "failed": failed,
        "scale": {
            "low": charts.fmt_number(low),
            "high": charts.fmt_number(high),
            "unit": unit,
            "gradient": ", ".join(
                charts.ramp(low + (high - low) * k / 8, low, high)[0] for k in range(9)
            )
            if unit
            else "",
            "low_style": f"background:{low_ink[0]};color:{low_ink[1]}",
            "high_style": f"background:{high_ink[0]};color:{high_ink[1]}",
        },
        "no_data": sum(1 for c in cells.values() if c["css"] == "nodata"),
    }


def server_heatmap(server: UltraServer, metric: str) -> dict:
    """The heatmap alone (its 10-second refresh and colour switch read nothing else)."""
    return heatmap(server, metric, ServerTelemetry.objects.filter(ultraserver=server).first())


def server_charts(server: UltraServer, range_name: str, now: dt.datetime | None = None) -> dict:
    """Power and chip temperature over the picked range, read at its resolution: raw
    samples for 1 h, 1-minute roll-ups for 6 h and 24 h, 1-hour roll-ups for 7 d."""
    now = now or timezone.now()
    window, resolution, max_gap = charts.RANGES[range_name]
    since = now - window
    rows: list[tuple[dt.datetime, float | None, float | None, float | None]]
    if resolution == "raw":
        # The newest samples when there are more than the cap (the right of the chart is
        # what a person looks at), drawn in time order.
        rows = list(
            ServerSample.objects.filter(ultraserver=server, ts__gte=since, ts__lte=now)
            .order_by("-ts")
            .values_list("ts", "power_total_w", "temp_max_c", "temp_avg_c")[:RAW_POINTS]
        )[::-1]
    else:
        rows = list(
            ServerRollup.objects.filter(
                ultraserver=server, resolution=resolution, bucket__gte=since, bucket__lte=now
            )
            .order_by("bucket")
            .values_list("bucket", "power_avg_w", "temp_max_c", "temp_avg_c")
        )
    rated_kw = server.model.max_power_w / 1000
    power = charts.chart(
        [
            (
                "average" if resolution != "raw" else "measured",
                [(t, p / 1000 if p is not None else None) for t, p, _, _ in rows],
            )
        ],
        start=since,
        end=now,
        unit="kW",
        min_span=max(rated_kw * 0.1, 1.0),
        floor=0.0,
        max_gap=max_gap,
    )
    temperature = charts.chart(
        [
            ("hottest chip", [(t, c) for t, _, c, _ in rows]),
            ("chip average", [(t, a) for t, _, _, a in rows]),
        ],
        start=since,
        end=now,
        unit="°C",
        min_span=10.0,
        max_gap=max_gap,
    )
    return {
        "power_chart": power,
        "temp_chart": temperature,
        "range": range_name,
        "ranges": list(charts.RANGES),
        "resolution": resolution,
        "rated_kw": rated_kw,
        "rated_kw_text": f"{rated_kw:.1f} kW",
        "points": len(rows),
    }


def server_page(
    server: UltraServer, metric: str, range_name: str = charts.DEFAULT_RANGE, *, actor: Actor
) -> dict:
    latest = ServerTelemetry.objects.filter(ultraserver=server).first()
    heat = heatmap(server, metric, latest)
    history = list(
        scope_queryset(  # as the history: a tenant sees its own chain's events only
            AuditEvent.objects.filter(
                object_type="inventory.ultraserver", object_id=str(server.pk)
            ),
            actor,
            ("tenant_id",),
        ).order_by("-occurred_at")[:30]
    )
    lifecycle = [
        {
            "at": e.occurred_at,
            "who": e.actor_username,
            "from": (e.before or {}).get("lifecycle_state"),
            "to": (e.after or {}).get("lifecycle_state"),
        }
        for e in history
        if (e.before or {}).get("lifecycle_state") != (e.after or {}).get("lifecycle_state")
    ]
    return {
        "latest": latest,
        **heat,
        **server_charts(server, range_name),
        "lifecycle": lifecycle,
        "touched": server_touches(server, actor),
        "targets": list(
            WorkflowTarget.objects.filter(ultraserver=server)
            .select_related("workflow")
            .order_by("-workflow__created_at")[:10]
        ),
        "faults": list(Fault.objects.filter(ultraserver=server).order_by("-opened_at")[:20]),
    }


def workflow_rows(actor: Actor) -> dict:
    scoped = workflows_for(actor)
    active = list(scoped.filter(state__in=ACTIVE_WORKFLOW_STATES).order_by("-created_at")[:50])
    recent = list(scoped.exclude(state__in=ACTIVE_WORKFLOW_STATES).order_by("-created_at")[:20])
    ids = [w.pk for w in active + recent]
    counts: defaultdict[int, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
    for workflow_id, state, n in (
        WorkflowTarget.objects.filter(workflow_id__in=ids)
        .values_list("workflow_id", "state")
        .annotate(n=Count("pk"))
    ):
        counts[workflow_id][state] = n
    batches: defaultdict[int, defaultdict[int, defaultdict[str, int]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(int))
    )
    for workflow_id, batch, state, n in (
        WorkflowTarget.objects.filter(workflow_id__in=ids, batch__isnull=False)
        .values_list("workflow_id", "batch", "state")
        .annotate(n=Count("pk"))
    ):
        batches[workflow_id][batch][state] += n
    domains: defaultdict[int, defaultdict[str, defaultdict[str, int]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(int))
    )
    for workflow_id, rack, state, n in (
        WorkflowTarget.objects.filter(workflow_id__in=[w.pk for w in active])
        .values_list("workflow_id", "ultraserver__rack__name", "state")
        .annotate(n=Count("pk"))
    ):
        domains[workflow_id][rack or "unracked"][state] += n

    def row(workflow: Workflow) -> dict[str, object]:
        by_state = counts[workflow.pk]
        total = sum(by_state.values())
        done = sum(n for s, n in by_state.items() if s not in ("pending", "running"))
        return {
            "workflow": workflow,
            "total": total,
            "done": done,
            "failed": by_state.get("failed", 0),
            "running": by_state.get("running", 0),
            "percent": percent(done, total) if total else 100.0,
            "batches": [
                {"batch": b, "states": dict(s), "total": sum(s.values())}
                for b, s in sorted(batches[workflow.pk].items())
            ],
            "domains": [
                {"rack": r, "states": dict(s)} for r, s in sorted(domains[workflow.pk].items())
            ],
        }

    return {"active": [row(w) for w in active], "recent": [row(w) for w in recent]}


def upgradable(site: Site) -> QuerySet[UltraServer]:
    return (
        UltraServer.objects.filter(rack__site=site, lifecycle_state="in-service")
        .exclude(pk__in=WorkflowTarget.objects.filter(active=True).values("ultraserver_id"))
        .select_related("model", "rack")
        .order_by("rack__name", "position")
    )


class FaultBadge(int):
    """The header badge: open, unsilenced critical and warning faults (info ones wait on the
    alerts page), with how many of them are critical, for its own colour."""

    critical: int

    def __new__(cls, total: int, critical: int) -> FaultBadge:
        badge = super().__new__(cls, total)
        badge.critical = critical
        return badge


def attention_faults(actor: Actor) -> QuerySet[Fault]:
    """The actor's open faults that want a person now: not silenced (or silenced until a time
    gone by)."""
    return scope_queryset(
        Fault.objects.filter(cleared_at__isnull=True).loud(), actor, ("site__tenant",)
    )


def open_fault_count(actor: Actor) -> FaultBadge:
    """One query."""
    counts = attention_faults(actor).aggregate(
        total=Count("pk", filter=Q(severity__in=(FaultSeverity.CRITICAL, FaultSeverity.WARNING))),
        critical=Count("pk", filter=Q(severity=FaultSeverity.CRITICAL)),
    )
    return FaultBadge(counts["total"], counts["critical"])
