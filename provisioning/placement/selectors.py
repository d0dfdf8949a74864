"""Read side of placement: which of a tenant's UltraServers at a site the solver may use, and
why each one it may not.

``candidates_for`` is the one place the solver's input is built (reservations, units and
replacements all use it), in a fixed number of queries however many servers the site holds:
the servers, the site's fabric, its feeds, the committed power per rack, and one query per kind
of hold (workflows, units, reservations).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.db.models import Count, Q, Sum
from django.utils import timezone

from factory.inventory.choices import ChipHealth, LifecycleState
from factory.inventory.models import NetworkNode, PowerFeed, UltraServer
from factory.inventory.power import FeedCapacity, kw, protected_budget
from factory.inventory.selectors import MAX_POWER_W
from provisioning.models import WorkflowTarget
from provisioning.placement.choices import (
    HOLDING_MEMBER_STATES,
    HOLDING_RESERVATION_STATES,
    HOLDING_UNIT_STATES,
)
from provisioning.placement.exports import node_id, node_path
from provisioning.placement.models import CapacityReservation, ReservedServer, UnitMember
from provisioning.placement.solver import Candidate
from provisioning.placement.topology import id_secret

if TYPE_CHECKING:
    from factory.inventory.models import Site

#: Memberships that hold a server (the partial unique constraint on ``UnitMember`` too).


def network_paths(site_id: int) -> dict[int, tuple[str, ...]]:
    """Every network node of the site → its path of node keys, top layer first (one query).

    The keys are the ids ``instance-topology/`` gives the site's tenant (``nn-`` + HMAC), not
    the nodes' primary keys: they end up in the solver's explanations and reasons, which the
    tenant reads, and must tell it nothing of the provider's fabric beyond what it may pair."""
    rows = list(
        NetworkNode.objects.filter(site_id=site_id).values_list(
            "id", "parent_id", "site__tenant_id"
        )
    )
    parents = {pk: parent for pk, parent, _ in rows}
    secret = id_secret()
    key = {pk: node_id(secret, tenant, pk) for pk, _, tenant in rows}
    return {pk: tuple(key[n] for n in node_path(pk, parents)) for pk in parents}


def _power_problems(site_id: int) -> tuple[dict[int, tuple[str, ...]], dict[int, list[str]]]:
    """Per rack of the site: its feed names, and the A+B headroom problems of its feeds.

    The repo's power model (``factory.inventory.selectors``) already commits every placed
    UltraServer at its peak draw, so joining a unit adds nothing to a feed: the problem is a
    rack whose committed peak no longer fits on one path alone (A+B: either path must carry
    the whole load), or that has only one path."""
    feeds: dict[int, list[PowerFeed]] = defaultdict(list)
    for feed in PowerFeed.objects.filter(rack__site_id=site_id).order_by("rack_id", "name"):
        feeds[feed.rack_id].append(feed)
    committed = {
        row["rack_id"]: float(row["watts"] or 0)
        for row in UltraServer.objects.filter(rack__site_id=site_id)
        .values("rack_id")
        .annotate(watts=Sum(MAX_POWER_W))
        .order_by()
    }
    names: dict[int, tuple[str, ...]] = {}
    problems: dict[int, list[str]] = defaultdict(list)
    for rack_id in set(feeds) | set(committed):
        rack_feeds = feeds.get(rack_id, [])
        names[rack_id] = tuple(f.name for f in rack_feeds)
        budget = protected_budget(FeedCapacity(f.path, f.capacity_watts) for f in rack_feeds)
        load = committed.get(rack_id, 0.0)
        for path in ("A", "B"):
            on_path = [f.name for f in rack_feeds if f.path == path]
            if not on_path:
                problems[rack_id].append(f"feed {path}: missing, no A+B redundancy")
                continue
            watts = budget.by_path.get(path, 0.0)
            if load > watts + 1e-6:
                problems[rack_id].append(
                    f"feed {path} ({', '.join(on_path)}): {kw(load - watts)} short of A+B "
                    f"headroom (committed {kw(load)}, path carries {kw(watts)})"
                )
    return names, problems


def _server_problems(row: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    if row["lifecycle_state"] != LifecycleState.IN_SERVICE:
        problems.append(f"not in service ({row['lifecycle_state']})")
    if row["in_maintenance"]:
        reason = f": {row['fault_reason']}" if row["fault_reason"] else ""
        problems.append(f"in maintenance{reason}")
    if row["isolated_since"] is not None:
        reason = f": {row['isolation_reason']}" if row["isolation_reason"] else ""
        problems.append(f"isolated{reason}")
    if row["unreachable_since"] is not None:
        problems.append(f"unreachable since {row['unreachable_since'].isoformat()}")
    if row["failed_chips"]:
        problems.append(f"unhealthy: {row['failed_chips']} chips failed")
    if row["network_node_id"] is None:
        problems.append("not in the fabric (no network node)")
    return problems


def candidates_for(
    site: Site,
    *,
    tenant_id: int,
    model_id: int | None = None,
    at: dt.datetime | None = None,
    until: dt.datetime | None = None,
    reservation: CapacityReservation | None = None,
    exclude_unit_id: int | None = None,
) -> list[Candidate]:
    """Every UltraServer at ``site`` allocated to ``tenant_id`` (of ``model_id`` if given) as a
    solver ``Candidate``, with every reason it may not be used in ``problems``.

    ``[at, until)`` is the time a placement needs the server (``at`` defaults to now; no
    ``until``: from ``at`` on, as a unit does). A server held by a scheduled or active
    reservation overlapping that range is excluded, unless ``reservation`` is given: then only
    that reservation's servers are usable. ``exclude_unit_id``: that unit's own members are not
    'held by another unit' (a replacement, or re-placing a unit)."""
    at = at or timezone.now()
    servers = UltraServer.objects.filter(rack__site_id=site.pk, tenant_id=tenant_id)
    if model_id is not None:
        servers = servers.filter(model_id=model_id)
    rows = list(
        servers.values(
            "id",
            "serial",
            "rack_id",
            "rack__name",
            "network_node_id",
            "lifecycle_state",
            "in_maintenance",
            "fault_reason",
            "isolated_since",
            "isolation_reason",
            "unreachable_since",
        )
        .annotate(failed_chips=Count("chips", filter=Q(chips__health=ChipHealth.FAILED)))
        .order_by("serial")
    )
    server_ids = servers.values("pk")
    paths = network_paths(site.pk)
    feed_names, power_problems = _power_problems(site.pk)

    held: dict[int, list[str]] = defaultdict(list)
    for server_id, workflow_id in WorkflowTarget.objects.filter(
        active=True, ultraserver__in=server_ids
    ).values_list("ultraserver_id", "workflow_id"):
        held[server_id].append(f"held by workflow #{workflow_id}")
    memberships = UnitMember.objects.filter(
        ultraserver__in=server_ids,
        state__in=HOLDING_MEMBER_STATES,
        unit__state__in=HOLDING_UNIT_STATES,
    )
    if exclude_unit_id is not None:
        memberships = memberships.exclude(unit_id=exclude_unit_id)
    for server_id, unit_id, unit_name in memberships.values_list(
        "ultraserver_id", "unit_id", "unit__name"
    ):
        held[server_id].append(f"member of unit {unit_name} (#{unit_id})")
    holds = ReservedServer.objects.filter(
        ultraserver__in=server_ids,
        reservation__state__in=HOLDING_RESERVATION_STATES,
        ends_at__gt=at,
    )
    if until is not None:
        holds = holds.filter(starts_at__lt=until)
    own: set[int] | None = None
    if reservation is not None:
        holds = holds.exclude(reservation_id=reservation.pk)
        own = set(
            ReservedServer.objects.filter(reservation_id=reservation.pk).values_list(
                "ultraserver_id", flat=True
            )
        )
    for server_id, reservation_id in holds.values_list("ultraserver_id", "reservation_id"):
        held[server_id].append(f"held by reservation cr-{reservation_id}")

    candidates = []
    for row in rows:
        problems = _server_problems(row)
        if own is not None and row["id"] not in own:
            problems.append(f"outside reservation cr-{reservation.pk}")  # type: ignore[union-attr]
        problems += held.get(row["id"], [])
        problems += power_problems.get(row["rack_id"], [])
        node = row["network_node_id"]
        candidates.append(
            Candidate(
                id=row["id"],
                serial=row["serial"],
                path=paths.get(node, ()) if node is not None else (),
                rack=row["rack__name"] or "",
                feeds=feed_names.get(row["rack_id"], ()),
                problems=tuple(problems),
            )
        )
    return candidates
