"""What each console page shows, in a fixed number of queries per page (no N+1)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db.models import Count, QuerySet
from django.utils import timezone

from factory.inventory.models import Chip, Site, UltraServer
from factory.inventory.power import kw
from factory.telemetry import codec
from factory.telemetry.models import (
    Fault,
    ServerRollup,
    ServerSample,
    ServerTelemetry,
)
from factory.telemetry.services import rack_power
from factory.wire import Metric
from provisioning.choices import ACTIVE_WORKFLOW_STATES
from provisioning.console import charts
from provisioning.console.charts import heat_class, percent
from provisioning.models import Workflow, WorkflowTarget
from tenants.access import Actor, scope_queryset
from tenants.models import AuditEvent

SITE_TENANT = ("tenant",)
SERVER_TENANT = ("rack__site__tenant", "tenant")


def sites_for(actor: Actor) -> QuerySet[Site]:
    return scope_queryset(Site.objects.select_related("tenant"), actor, SITE_TENANT)


def servers_for(actor: Actor) -> QuerySet[UltraServer]:
    return scope_queryset(
        UltraServer.objects.select_related("model", "rack__site"), actor, SERVER_TENANT
    )


def workflows_for(actor: Actor) -> QuerySet[Workflow]:
    return scope_queryset(Workflow.objects.select_related("site"), actor, ("site__tenant",))


def fleet(actor: Actor) -> list[dict]:
    sites = list(sites_for(actor).order_by("code"))
    ids = [s.pk for s in sites]
    power = defaultdict(list)
    for line in rack_power(ids):
        power[line.rack.site_id].append(line)
    chips: defaultdict[int, dict[str, int]] = defaultdict(dict)
    for site_id, health, n in (
        Chip.objects.filter(ultraserver__rack__site_id__in=ids)
        .values_list("ultraserver__rack__site_id", "health")
        .annotate(n=Count("pk"))
    ):
        chips[site_id][health] = n
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
    return {"racks": columns}


HEAT_METRICS = {"health": "Health", "temp": "Temperature", "util": "Utilization"}


def server_page(server: UltraServer, metric: str) -> dict:
    latest = ServerTelemetry.objects.filter(ultraserver=server).first()
    temps = codec.unpack(Metric.TEMP_C, latest.temp_c) if latest else None
    utils = codec.unpack(Metric.UTILIZATION, latest.utilization) if latest else None
    chips = []
    failed = 0
    for chip in server.chips.order_by("index").only("index", "health", "serial", "health_note"):
        temp = temps[chip.index] if temps and chip.index < len(temps) else None
        util = utils[chip.index] if utils and chip.index < len(utils) else None
        value = {"temp": temp, "util": util}.get(metric)
        label = {
            "health": chip.health,
            "temp": f"{temp:.0f}°" if temp is not None else "–",
            "util": f"{util * 100:.0f}%" if util is not None else "–",
        }[metric]
        if chip.health == "failed":
            failed += 1
        chips.append(
            {
                "chip": chip,
                "css": heat_class(metric, value, chip.health),
                "label": label,
                "temp": temp,
                "util": util,
            }
        )
    since = timezone.now() - dt.timedelta(hours=6)
    rollups = list(
        ServerRollup.objects.filter(ultraserver=server, resolution="1m", bucket__gte=since)
        .order_by("bucket")
        .values_list("bucket", "power_avg_w", "temp_max_c")
    )
    if len(rollups) < 2:  # roll-ups not there yet: the raw samples of the last hour
        rollups = list(
            ServerSample.objects.filter(
                ultraserver=server, ts__gte=timezone.now() - dt.timedelta(hours=1)
            )
            .order_by("ts")
            .values_list("ts", "power_total_w", "temp_max_c")[:720]
        )
    power = charts.line([(f"{t:%H:%M}", p / 1000 if p else None) for t, p, _ in rollups])
    temperature = charts.line([(f"{t:%H:%M}", c) for t, _, c in rollups])
    history = list(
        AuditEvent.objects.filter(
            object_type="inventory.ultraserver", object_id=str(server.pk)
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
        "chips": chips,
        "failed": failed,
        "power_chart": power,
        "temp_chart": temperature,
        "lifecycle": lifecycle,
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


def open_fault_count(actor: Actor) -> int:
    return scope_queryset(
        Fault.objects.filter(cleared_at__isnull=True), actor, ("site__tenant",)
    ).count()
