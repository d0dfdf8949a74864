"""Read-side queries: committed power, budgets, placement checks and capacity summaries.

Committed power is the peak (max) draw of every placed UltraServer: breakers trip on peaks, so
budgets are checked against the worst case. Heat load equals electrical load (kW in = kW out).
Each summary is computed in a fixed number of queries however many racks or servers there are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from decimal import Decimal
from typing import Any, cast

from django.db.models import Count, DecimalField, ExpressionWrapper, F, IntegerField, QuerySet, Sum

from factory.inventory.choices import ChipHealth
from factory.inventory.models import ChipCounts, PowerFeed, Rack, Site, UltraServer
from factory.inventory.power import (
    FeedCapacity,
    PowerBudget,
    budget_shortfall,
    protected_budget,
    span_overlaps,
)

MAX_POWER_W = ExpressionWrapper(
    F("model__chip_model__max_power_w") * F("model__chip_count") + F("model__overhead_power_w"),
    output_field=IntegerField(),
)
FP8_DENSE_PFLOPS = ExpressionWrapper(
    F("model__chip_model__fp8_dense_pflops") * F("model__chip_count"),
    output_field=DecimalField(max_digits=14, decimal_places=3),
)
HBM_GB = ExpressionWrapper(
    F("model__chip_model__hbm_gb") * F("model__chip_count"),
    output_field=DecimalField(max_digits=14, decimal_places=3),
)


def committed_watts(
    *, rack_id: int | None = None, site_id: int | None = None, exclude_pk: int | None = None
) -> float:
    servers = UltraServer.objects.filter(rack__isnull=False)
    if rack_id is not None:
        servers = servers.filter(rack_id=rack_id)
    if site_id is not None:
        servers = servers.filter(rack__site_id=site_id)
    if exclude_pk is not None:
        servers = servers.exclude(pk=exclude_pk)
    return float(servers.aggregate(watts=Sum(MAX_POWER_W))["watts"] or 0)


def rack_power_budget(rack_id: int) -> PowerBudget:
    feeds = PowerFeed.objects.filter(rack_id=rack_id)
    return protected_budget(FeedCapacity(f.path, f.capacity_watts) for f in feeds)


def placement_problems(server: UltraServer) -> list[tuple[str, str, str]]:
    """Every reason ``server`` cannot stand where it is: (field, code, message). ``server``
    is placed (has a rack and a position)."""
    rack, model, position = server.rack, server.model, server.position
    assert rack is not None and position is not None, "placement_problems of an unplaced server"
    site = rack.site
    problems: list[tuple[str, str, str]] = []
    top = position + model.rack_units - 1
    if top > rack.u_height:
        problems.append(
            (
                "position",
                "position_outside_rack",
                f"{model.name} at U{position} needs U{position}–U{top}; rack {rack.name} has "
                f"{rack.u_height}U",
            )
        )
    else:
        neighbours = (
            UltraServer.objects.filter(rack=rack)
            .exclude(pk=server.pk)
            .values_list("serial", "position", "model__rack_units")
        )
        for serial, other_position, units in neighbours:
            assert other_position is not None  # a constraint: rack and position are set together
            if span_overlaps(position, model.rack_units, other_position, units):
                problems.append(
                    (
                        "position",
                        "position_taken",
                        f"rack {rack.name} U{other_position}–U{other_position + units - 1} "
                        f"is taken by {serial}",
                    )
                )
                break
    if model.cooling != rack.cooling_type:
        problems.append(
            (
                "rack",
                "cooling_type_mismatch",
                f"{model.name} is {model.cooling}-cooled; rack {rack.name} is "
                f"{rack.cooling_type}-cooled",
            )
        )
    needed = float(model.max_power_w)
    in_rack = committed_watts(rack_id=rack.pk, exclude_pk=server.pk)
    checks = [
        (
            "rack_power_budget_exceeded",
            f"rack {rack.name} power budget",
            rack_power_budget(rack.pk).watts,
            in_rack,
        ),
        (
            "rack_cooling_capacity_exceeded",
            f"rack {rack.name} cooling capacity",
            float(rack.cooling_capacity_kw) * 1000,
            in_rack,
        ),
    ]
    in_site = committed_watts(site_id=site.pk, exclude_pk=server.pk)
    checks += [
        (
            "site_contracted_power_exceeded",
            f"site {site.code} contracted power",
            float(site.contracted_power_kw) * 1000,
            in_site,
        ),
        (
            "site_contracted_cooling_exceeded",
            f"site {site.code} contracted cooling",
            float(site.contracted_cooling_kw) * 1000,
            in_site,
        ),
    ]
    for code, label, budget, committed in checks:
        message = budget_shortfall(label, budget, committed, needed, model.name)
        if message:
            problems.append(("rack", code, message))
    return problems


# --- Capacity summaries -------------------------------------------------------------------------


def _kw(watts: float) -> float:
    return round(watts / 1000, 3)


def _empty_totals() -> dict[str, Any]:
    return {
        "ultraservers": 0,
        "committed_w": 0.0,
        "chips": {"total": 0, **{h.value: 0 for h in ChipHealth}},
        "fp8_dense_pflops": Decimal(0),
        "hbm_gb": Decimal(0),
    }


def chip_counts_by(
    group: str, counts: QuerySet[ChipCounts] | None = None
) -> dict[Any, dict[str, int]]:
    """Chips by health state, summed from the counts the database keeps per server
    (``ChipCounts``) and grouped by ``group``, an ORM path from them (``ultraserver__rack_id``,
    ``ultraserver__rack__site_id``): a row per server read, never one per chip."""
    rows = (
        (ChipCounts.objects.all() if counts is None else counts)
        .order_by()
        .values(group)
        .annotate(**{state: Sum(state) for state in ChipCounts.STATES})
    )
    out: dict[Any, dict[str, int]] = {}
    for row in rows:
        values = cast("dict[str, Any]", row)
        out[values[group]] = {state: values[state] or 0 for state in ChipCounts.STATES}
    return out


def _server_totals(rack_ids: Collection[int]) -> dict[int, dict[str, Any]]:
    totals: dict[int, dict[str, Any]] = defaultdict(_empty_totals)
    rows = (
        UltraServer.objects.filter(rack_id__in=rack_ids)
        .values("rack_id")
        .annotate(
            servers=Count("id"),
            power=Sum(MAX_POWER_W),
            pflops=Sum(FP8_DENSE_PFLOPS),
            hbm=Sum(HBM_GB),
        )
        .order_by()
    )
    for row in rows:
        t = totals[row["rack_id"]]
        t["ultraservers"] = row["servers"]
        t["committed_w"] = float(row["power"] or 0)
        t["fp8_dense_pflops"] = row["pflops"] or Decimal(0)
        t["hbm_gb"] = row["hbm"] or Decimal(0)
    for rack_id, by_state in chip_counts_by(
        "ultraserver__rack_id", ChipCounts.objects.filter(ultraserver__rack_id__in=rack_ids)
    ).items():
        chips = totals[rack_id]["chips"]
        for state, n in by_state.items():
            chips[state] += n
            chips["total"] += n
    return totals


def _public_totals(t: dict[str, Any]) -> dict[str, Any]:
    return {
        "ultraservers": t["ultraservers"],
        "chips": t["chips"],
        "fp8_dense_pflops": float(t["fp8_dense_pflops"]),
        "hbm_tb": float(t["hbm_gb"] / 1000),
    }


def rack_capacities(racks: Iterable[Rack]) -> dict[int, dict[str, Any]]:
    racks = list(racks)
    rack_ids = [r.pk for r in racks]
    feeds: dict[int, list[FeedCapacity]] = defaultdict(list)
    for feed in PowerFeed.objects.filter(rack_id__in=rack_ids):
        feeds[feed.rack_id].append(FeedCapacity(feed.path, feed.capacity_watts))
    totals = _server_totals(rack_ids)
    out = {}
    for rack in racks:
        t = totals[rack.pk]
        budget = protected_budget(feeds[rack.pk])
        cooling_w = float(rack.cooling_capacity_kw) * 1000
        out[rack.pk] = {
            "rack": rack.pk,
            "name": rack.name,
            "site": rack.site_id,
            "power": {
                "budget_kw": _kw(budget.watts),
                "committed_kw": _kw(t["committed_w"]),
                "available_kw": _kw(budget.watts - t["committed_w"]),
                "redundant": budget.redundant,
                "paths_kw": {path: _kw(w) for path, w in sorted(budget.by_path.items())},
            },
            "cooling": {
                "capacity_kw": _kw(cooling_w),
                "committed_kw": _kw(t["committed_w"]),
                "available_kw": _kw(cooling_w - t["committed_w"]),
            },
            **_public_totals(t),
        }
    return out


#: Placement (``provisioning.placement``) holds servers through the reverse relations
#: ``reservation_holds`` and ``unit_memberships``. ``factory`` may not import ``provisioning``
#: (import-linter layers), so its states are named here as the strings they are stored as:
#: reservations ``scheduled``/``active`` hold; memberships ``active``/``failed`` of units
#: ``active``/``degraded`` hold (``placement.choices`` HOLDING_* states).
_HOLDING_RESERVATIONS = ("scheduled", "active")
_HOLDING_MEMBERS = ("active", "failed")
_HOLDING_UNITS = ("active", "degraded")


def _placement_counts(site_ids: Collection[int]) -> dict[int, dict[str, int]]:
    """Per site: servers a reservation holds right now, servers a reservation not started yet
    already holds (a scheduled one has its servers from the moment it is made: a placement
    overlapping it cannot use them), and servers in a unit (two queries). A server held now and
    by a later reservation too is counted in both."""
    from django.db.models import Q
    from django.utils import timezone

    now = timezone.now()
    counts: dict[int, dict[str, int]] = defaultdict(
        lambda: {"reserved": 0, "reserved_scheduled": 0, "in_units": 0}
    )
    # annotate() after filter(): the counts run over the holds the filter kept (one join).
    reserved = (
        UltraServer.objects.filter(
            rack__site_id__in=site_ids,
            reservation_holds__reservation__state__in=_HOLDING_RESERVATIONS,
            reservation_holds__ends_at__gt=now,
        )
        .values("rack__site_id")
        .annotate(
            now=Count("id", distinct=True, filter=Q(reservation_holds__starts_at__lte=now)),
            later=Count("id", distinct=True, filter=Q(reservation_holds__starts_at__gt=now)),
        )
        .order_by()
    )
    for held in reserved:
        counts[held["rack__site_id"]]["reserved"] = held["now"]
        counts[held["rack__site_id"]]["reserved_scheduled"] = held["later"]
    in_units = (
        UltraServer.objects.filter(
            rack__site_id__in=site_ids,
            unit_memberships__state__in=_HOLDING_MEMBERS,
            unit_memberships__unit__state__in=_HOLDING_UNITS,
        )
        .values("rack__site_id")
        .annotate(n=Count("id", distinct=True))
        .order_by()
    )
    for unit_row in in_units:
        counts[unit_row["rack__site_id"]]["in_units"] = unit_row["n"]
    return counts


def site_capacities(sites: Iterable[Site]) -> dict[int, dict[str, Any]]:
    sites = list(sites)
    racks = list(Rack.objects.filter(site__in=sites))
    per_rack = rack_capacities(racks)
    totals = _server_totals([r.pk for r in racks])
    placed = _placement_counts([site.pk for site in sites])
    out = {}
    for site in sites:
        site_racks = [r for r in racks if r.site_id == site.pk]
        t = _empty_totals()
        for rack in site_racks:
            rt = totals[rack.pk]
            t["ultraservers"] += rt["ultraservers"]
            t["committed_w"] += rt["committed_w"]
            t["fp8_dense_pflops"] += rt["fp8_dense_pflops"]
            t["hbm_gb"] += rt["hbm_gb"]
            for key, n in rt["chips"].items():
                t["chips"][key] += n
        contracted_power_w = float(site.contracted_power_kw) * 1000
        contracted_cooling_w = float(site.contracted_cooling_kw) * 1000
        out[site.pk] = {
            "site": site.pk,
            "code": site.code,
            "racks": len(site_racks),
            "power": {
                "contracted_kw": _kw(contracted_power_w),
                "rack_budgets_kw": round(
                    sum(per_rack[r.pk]["power"]["budget_kw"] for r in site_racks), 3
                ),
                "committed_kw": _kw(t["committed_w"]),
                "available_kw": _kw(contracted_power_w - t["committed_w"]),
            },
            "cooling": {
                "contracted_kw": _kw(contracted_cooling_w),
                "committed_kw": _kw(t["committed_w"]),
                "available_kw": _kw(contracted_cooling_w - t["committed_w"]),
            },
            **_public_totals(t),
            "reserved": placed[site.pk]["reserved"],
            "reserved_scheduled": placed[site.pk]["reserved_scheduled"],
            "in_units": placed[site.pk]["in_units"],
        }
    return out
