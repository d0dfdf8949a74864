"""What the topology, reservation and unit pages show, in a fixed number of queries per page.

A site's fabric can hold thousands of UltraServers: every query here reads the whole site at
once (values, not model instances, where a page lists servers) and the tree, colours and
distances are assembled in Python, so the query count does not grow with the site.

Provider people see the fabric's node names; a tenant's people see each node only as a
per-tenant hash (``nn-…``), and node names are scrubbed from the solver's explanation."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from factory.inventory.models import Chip, NetworkNode, Site, UltraServer
from factory.inventory.topology import hops, lowest_common_node, max_hops, mean_hops
from provisioning.models import WorkflowTarget
from provisioning.placement import exports
from provisioning.placement.choices import (
    HOLDING_MEMBER_STATES,
    HOLDING_UNIT_STATES,
    MemberRole,
    MemberState,
)
from provisioning.placement.models import (
    CapacityReservation,
    UnitMember,
    UnitReplacement,
    WorkloadUnit,
)
from provisioning.placement.topology import id_secret
from tenants.access import Actor, scope_queryset

#: Unit colours: a unit's colour is ``PALETTE[pk % len(PALETTE)]`` on every page (stable: the
#: same unit has the same colour on the topology page, its legend and the unit page).
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#393b79",
    "#ad494a",
    "#637939",
)
#: Live memberships: a failed member still belongs to its unit until it is replaced.
#: Health → (marker, words). Colour is never the only signal: each has a glyph and a label.
HEALTH = {
    "ok": ("", "healthy, in service"),
    "idle": ("·", "not in service"),
    "maintenance": ("⚠", "maintenance"),
    "failed": ("✗", "failed"),
    "isolated": ("⊘", "isolated (powered off)"),
    "unreachable": ("?", "unreachable"),
}
MAINTENANCE_STATES = {"maintenance", "draining", "upgrading"}
RESERVATION_LIMIT = 200
UNIT_LIMIT = 500


def unit_colour(unit_id: int) -> int:
    """The palette index of a unit (templates use the ``u<index>`` class)."""
    return unit_id % len(PALETTE)


def is_provider(actor: Actor) -> bool:
    return bool(actor.provider_role)


def hashed_node_id(tenant_id: int | None, node_id: int) -> str:
    """The node's id as ``instance-topology/`` gives it to ``tenant_id`` (``nn-`` + a truncated
    HMAC): the same switch, the same id for one tenant, different ids for different tenants,
    no name and no count. The console and the API show a tenant the same ids."""
    return exports.node_id(id_secret(), tenant_id, node_id)


#: A node as the solver names it in its reasons: the tenant's hashed id
#: (``provisioning.placement.selectors.network_paths``).
_HASHED_KEY = re.compile(re.escape(exports.NODE_PREFIX) + r"[0-9a-f]+")


class NodeNames:
    """How a site's nodes are named for one viewer: real names for provider people, per-tenant
    hashes for a tenant's (with the site's tenant, as ``instance-topology/`` does). ``scrub``
    rewrites node keys and names inside the solver's reasons the same way."""

    def __init__(self, tenant_id: int | None, actor: Actor, nodes: Iterable[dict[str, Any]]):
        self.real = is_provider(actor)
        self.tenant_id = tenant_id
        self.by_pk = {n["pk"]: n for n in nodes}
        self._parents = {pk: n["parent_id"] for pk, n in self.by_pk.items()}
        self.label_of = {pk: self._label(n) for pk, n in self.by_pk.items()}
        # The solver keys nodes by the tenant's hashed ids (selectors.network_paths).
        self._hashed = {hashed_node_id(tenant_id, pk): self.label_of[pk] for pk in self.by_pk}
        self._names = {n["name"]: self.label_of[pk] for pk, n in self.by_pk.items() if n["name"]}
        longest = sorted(self._names, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(n) for n in longest)) if longest else None

    def _label(self, node: dict[str, Any]) -> str:
        return node["name"] if self.real else hashed_node_id(self.tenant_id, node["pk"])

    def of(self, pk: int | None) -> str:
        return self.label_of.get(pk, "") if pk is not None else ""

    def key(self, key: object) -> str:
        """A node as the solver keyed it (the tenant's hashed id, or a name), as this viewer
        may see it."""
        if key is None or key == "":
            return ""
        text = str(key)
        if text in self._hashed:
            return self._hashed[text]
        if text in self._names:
            return self._names[text]
        return self.scrub(text)

    def scrub(self, text: str) -> str:
        """``text`` with each node key and (for a tenant) each node name replaced by what this
        viewer sees of the node."""
        if not isinstance(text, str):
            return text
        text = _HASHED_KEY.sub(lambda m: self._hashed.get(m.group(0), m.group(0)), text)
        if self.real or self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self._names[m.group(0)], text)

    def path(self, node_id: int | None) -> tuple[str, ...]:
        """Node pks (as strings) from the top layer down to ``node_id``: the distance key."""
        if node_id not in self._parents:
            return ()
        return tuple(map(str, exports.node_path(node_id, self._parents)))


def _names_by_site(actor: Actor, tenants: Mapping[int, int | None]) -> dict[int, NodeNames]:
    """``NodeNames`` for several sites (site id → its tenant id) in one query."""
    nodes: defaultdict[int, list[dict[str, Any]]] = defaultdict(list)
    for node in NetworkNode.objects.filter(site_id__in=list(tenants)).values(
        "pk", "name", "layer", "parent_id", "site_id"
    ):
        nodes[node["site_id"]].append(dict(node))
    return {site: NodeNames(tenant, actor, nodes[site]) for site, tenant in tenants.items()}


def _site_nodes(site: Site) -> list[dict[str, Any]]:
    return [
        dict(n)
        for n in NetworkNode.objects.filter(site=site)
        .order_by("layer", "name")
        .values("pk", "name", "layer", "parent_id")
    ]


def _health(row: Mapping[str, Any], failed_chips: int) -> str:
    if row["unreachable_since"]:
        return "unreachable"
    if row["isolated_since"]:
        return "isolated"
    if failed_chips or row["lifecycle_state"].endswith("-failed"):
        return "failed"
    if row["in_maintenance"] or row["lifecycle_state"] in MAINTENANCE_STATES:
        return "maintenance"
    return "ok" if row["lifecycle_state"] == "in-service" else "idle"


def _server_href() -> Callable[[int], str]:
    """The UltraServer page URL of a pk, reversed once (a site may have thousands)."""
    template = reverse("console:ultraserver", args=[987654321])
    return lambda pk: template.replace("987654321", str(pk))


def _unit_href() -> Callable[[int], str]:
    template = reverse("console:unit", args=[987654321])
    return lambda pk: template.replace("987654321", str(pk))


def units_at(site: Site, actor: Actor) -> list[WorkloadUnit]:
    return list(
        scope_queryset(WorkloadUnit.objects.filter(site=site), actor, ("tenant",))
        .filter(state__in=HOLDING_UNIT_STATES)
        .order_by("name")
    )


def site_topology(site: Site, actor: Actor) -> dict[str, Any]:
    """The fabric tree of ``site`` with each server as a compact cell: its unit's colour, its
    health marker, leader flagged. Seven queries whatever the size of the site."""
    nodes = _site_nodes(site)
    names = NodeNames(site.tenant_id, actor, nodes)
    at_site = Q(rack__site=site) | Q(network_node__site=site)
    servers = list(
        UltraServer.objects.filter(at_site)
        .order_by("rack__name", "position", "serial")
        .values(
            "pk",
            "serial",
            "lifecycle_state",
            "in_maintenance",
            "unreachable_since",
            "isolated_since",
            "network_node_id",
            "rack__name",
            "position",
        )
    )
    on_site = Q(ultraserver__rack__site=site) | Q(ultraserver__network_node__site=site)
    failed = dict(
        Chip.objects.filter(on_site, health="failed")
        .values_list("ultraserver_id")
        .annotate(n=Count("pk"))
        .values_list("ultraserver_id", "n")
    )
    held = dict(
        WorkflowTarget.objects.filter(on_site, active=True).values_list(
            "ultraserver_id", "workflow__kind"
        )
    )
    units = units_at(site, actor)
    membership = {
        server_id: (unit_id, role, state)
        for server_id, unit_id, role, state in UnitMember.objects.filter(
            unit__in=[u.pk for u in units], state__in=HOLDING_MEMBER_STATES
        ).values_list("ultraserver_id", "unit_id", "role", "state")
    }
    unit_by_pk = {u.pk: u for u in units}
    server_href, unit_href = _server_href(), _unit_href()
    under: defaultdict[int | None, list[dict[str, Any]]] = defaultdict(list)
    health_counts: Counter[str] = Counter()
    members_shown: Counter[int] = Counter()
    for row in servers:
        n_failed = failed.get(row["pk"], 0)
        health = _health(row, n_failed)
        health_counts[health] += 1
        marker, words = HEALTH[health]
        unit_id, role, member_state = membership.get(row["pk"], (None, None, None))
        unit = unit_by_pk.get(unit_id) if unit_id else None
        title = [row["serial"], row["lifecycle_state"], words]
        if n_failed:
            title.append(f"{n_failed} chip{'s' if n_failed != 1 else ''} failed")
        if row["rack__name"]:
            title.append(f"{row['rack__name']} U{row['position']}")
        if unit is not None:
            members_shown[unit.pk] += 1
            extra = "" if member_state == MemberState.ACTIVE else f", {member_state}"
            title.append(f"unit {unit.name} ({role}{extra})")
        if held.get(row["pk"]):
            title.append(f"held by {held[row['pk']]}")
        hung = row["network_node_id"] if row["network_node_id"] in names.by_pk else None
        under[hung].append(
            {
                "pk": row["pk"],
                "serial": row["serial"],
                "href": server_href(row["pk"]),
                "health": health,
                "marker": marker or ("⟳" if held.get(row["pk"]) else ""),
                "unit": unit_colour(unit.pk) if unit else None,
                "leader": role == MemberRole.LEADER,
                "title": " · ".join(title),
            }
        )
    children: defaultdict[int | None, list[dict[str, Any]]] = defaultdict(list)
    for node in nodes:
        parent = node["parent_id"] if node["parent_id"] in names.by_pk else None
        children[parent].append(node)
    tree: list[dict[str, Any]] = []
    totals: dict[int, int] = {}

    def walk(node: dict[str, Any], depth: int) -> int:
        row = {
            "pk": node["pk"],
            "label": names.of(node["pk"]),
            "layer": node["layer"],
            "depth": depth,
            "servers": under.get(node["pk"], []),
        }
        tree.append(row)
        total = len(row["servers"])
        for child in children.get(node["pk"], []):
            total += walk(child, depth + 1)
        row["total"] = total
        totals[node["pk"]] = total
        return total

    for root in children.get(None, []):
        walk(root, 0)
    legend = [
        {
            "unit": u,
            "colour": unit_colour(u.pk),
            "hex": PALETTE[unit_colour(u.pk)],
            "href": unit_href(u.pk),
            "shown": members_shown[u.pk],
        }
        for u in units
    ]
    return {
        "tree": tree,
        "outside": under.get(None, []),
        "legend": legend,
        "node_names_real": names.real,
        "server_count": len(servers),
        "node_count": len(nodes),
        "health_counts": [
            {"health": h, "marker": HEALTH[h][0], "words": HEALTH[h][1], "n": health_counts[h]}
            for h in HEALTH
            if health_counts[h]
        ],
        "palette": list(enumerate(PALETTE)),
    }


# --- reservations ----------------------------------------------------------------------------


def reservations_for(actor: Actor) -> QuerySet[CapacityReservation]:
    return scope_queryset(
        CapacityReservation.objects.select_related("site", "model", "tenant"), actor, ("tenant",)
    )


def _pct(at: dt.datetime, lo: dt.datetime, span: float) -> float:
    return max(0.0, min(100.0, (at - lo).total_seconds() / span * 100))


def reservation_timeline(
    actor: Actor, site: Site | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The caller's reservations (of one site, or all) as bars on one time axis, today marked:
    the latest ``RESERVATION_LIMIT`` by start. Three queries."""
    now = now or timezone.now()
    scoped = reservations_for(actor)
    if site is not None:
        scoped = scoped.filter(site=site)
    total = scoped.count()
    rows = list(
        scoped.annotate(units_n=Count("units", distinct=True)).order_by("-starts_at", "-id")[
            :RESERVATION_LIMIT
        ]
    )
    rows.reverse()
    if not rows:
        return {"rows": [], "ticks": [], "now_pct": None, "total": total, "now": now}
    lo = min(min(r.starts_at for r in rows), now)
    hi = max(max(r.ends_at for r in rows), now)
    pad = max((hi - lo) * 0.03, dt.timedelta(hours=1))
    lo, hi = lo - pad, hi + pad
    span = (hi - lo).total_seconds()
    fmt = "%b %d %H:%M" if hi - lo <= dt.timedelta(days=3) else "%Y-%m-%d"
    ticks = []
    for i in range(7):
        at = lo + (hi - lo) * (i / 6)
        ticks.append({"pct": i / 6 * 100, "label": timezone.localtime(at).strftime(fmt)})
    names = _names_by_site(actor, {r.site_id: r.site.tenant_id for r in rows})
    bars = []
    for r in rows:
        left = _pct(r.starts_at, lo, span)
        right = _pct(r.ends_at, lo, span)
        constraint = r.get_constraint_display()
        if r.constraint == "max_hops" and r.max_hops is not None:
            constraint = f"at most {r.max_hops} hops apart"
        bars.append(
            {
                "r": r,
                "left": round(left, 3),
                "width": round(max(right - left, 0.4), 3),
                "constraint": constraint,
                "reason": names[r.site_id].scrub(r.state_reason),
                "now_inside": r.starts_at <= now < r.ends_at,
            }
        )
    return {
        "rows": bars,
        "ticks": ticks,
        "now_pct": round(_pct(now, lo, span), 3),
        "total": total,
        "now": now,
    }


# --- units -----------------------------------------------------------------------------------


def units_for(actor: Actor) -> QuerySet[WorkloadUnit]:
    return scope_queryset(
        WorkloadUnit.objects.select_related("site", "reservation", "tenant"), actor, ("tenant",)
    )


def unit_rows(actor: Actor) -> list[dict[str, Any]]:
    """Every unit the caller may see (holding ones first), with its live member count."""
    units = list(
        units_for(actor)
        .annotate(
            live=Count("members", filter=Q(members__state__in=HOLDING_MEMBER_STATES)),
            failed_n=Count("members", filter=Q(members__state=MemberState.FAILED)),
        )
        .order_by("-state", "site__code", "name")[:UNIT_LIMIT]
    )
    order = {"degraded": 0, "active": 1, "released": 2}
    units.sort(key=lambda u: (order.get(u.state, 3), u.site.code, u.name))
    names = _names_by_site(actor, {u.site_id: u.site.tenant_id for u in units})
    return [
        {
            "unit": u,
            "reason": names[u.site_id].scrub(u.state_reason),
            "colour": unit_colour(u.pk),
            "hex": PALETTE[unit_colour(u.pk)],
        }
        for u in units
    ]


def _excluded(raw: Any, names: NodeNames) -> dict[str, Any]:
    """The solver's excluded servers in one shape, whatever bounded form it stored: counts by
    reason, the servers it listed (serial → reason), and how many it left out."""
    counts: Counter[str] = Counter()
    listed: list[tuple[str, str]] = []
    left_out = 0
    if isinstance(raw, dict):
        by_reason = next(
            (raw[k] for k in ("by_reason", "counts", "reasons") if isinstance(raw.get(k), dict)),
            None,
        )
        servers = next(
            (
                raw[k]
                for k in ("servers", "serials", "sample", "listed")
                if isinstance(raw.get(k), dict | list)
            ),
            None,
        )
        for k in ("left_out", "omitted", "more", "truncated", "not_listed"):
            if isinstance(raw.get(k), int) and not isinstance(raw.get(k), bool):
                left_out = raw[k]
                break
        if by_reason is None and servers is None:
            servers = raw  # the plain form: serial → reason
        if by_reason is not None:
            for reason, n in by_reason.items():
                counts[names.scrub(str(reason))] += n if isinstance(n, int) else 1
        if isinstance(servers, dict):
            listed = [(str(s), names.scrub(str(why))) for s, why in servers.items()]
        elif isinstance(servers, list):
            for item in servers:
                if isinstance(item, dict):
                    serial = item.get("serial", "")
                    why = item.get("reason", item.get("why", ""))
                    listed.append((str(serial), names.scrub(str(why))))
                elif isinstance(item, list | tuple) and len(item) == 2:
                    listed.append((str(item[0]), names.scrub(str(item[1]))))
        if by_reason is None:
            counts.update(why for _, why in listed)
    elif isinstance(raw, list):
        return _excluded({"servers": raw}, names)
    return {
        "counts": counts.most_common(),
        "listed": sorted(listed),
        "left_out": left_out,
        "total": sum(counts.values()) or len(listed) + left_out,
    }


def explanation(raw: Any, names: NodeNames) -> dict[str, Any]:
    """The parts of ``WorkloadUnit.explanation`` the unit page shows, node names as the viewer
    may see them; a provider also gets the stored JSON as it is."""
    raw = raw if isinstance(raw, dict) else {}
    excluded = raw.get("excluded") or {}
    if "excluded_by_reason" in raw or "excluded_not_listed" in raw:  # the solver's flat form
        excluded = {
            "servers": excluded if isinstance(excluded, dict | list) else {},
            "by_reason": raw.get("excluded_by_reason") or {},
            "not_listed": raw.get("excluded_not_listed") or 0,
        }
    chosen = []
    for item in raw.get("chosen") or []:
        if isinstance(item, dict):
            node = item.get("node", item.get("lowest_node", item.get("path_node", "")))
            why = item.get("why", item.get("reason", ""))
            chosen.append(
                {
                    "serial": str(item.get("serial", item.get("id", ""))),
                    "node": names.key(node),
                    "why": names.scrub(str(why)) if why else "",
                }
            )
        else:
            chosen.append({"serial": str(item), "node": "", "why": ""})
    considered = raw.get("considered")
    return {
        "present": bool(raw),
        "chosen": chosen,
        "excluded": _excluded(excluded, names),
        "mean_hops": raw.get("mean_hops"),
        "max_hops": raw.get("max_hops"),
        "lowest_common_node": names.key(raw.get("lowest_common_node")),
        "considered": (
            [(names.scrub(str(k)), v) for k, v in considered.items()]
            if isinstance(considered, dict)
            else []
        ),
        "raw": raw if names.real else None,
    }


def unit_page(unit: WorkloadUnit, actor: Actor) -> dict[str, Any]:
    """Members (leader first, hops to the leader from the fabric), the solver's explanation,
    replacements. Four queries whatever the unit's size."""
    names = NodeNames(unit.site.tenant_id, actor, _site_nodes(unit.site))
    members = list(
        UnitMember.objects.filter(unit=unit)
        .select_related("ultraserver__rack", "ultraserver__model")
        .order_by("left_at", "-role", "id")
    )
    current = [m for m in members if m.state in HOLDING_MEMBER_STATES]
    leader = next((m for m in current if m.role == MemberRole.LEADER), None)
    leader_path = names.path(leader.ultraserver.network_node_id) if leader else ()
    rows = []
    paths = []
    for m in members:
        path = names.path(m.ultraserver.network_node_id)
        live = m.state in HOLDING_MEMBER_STATES
        if live:
            paths.append(path)
        to_leader = None
        if live and leader is not None:
            to_leader = 0 if m.pk == leader.pk else hops(path, leader_path)
        rows.append(
            {
                "member": m,
                "server": m.ultraserver,
                "leader": leader is not None and m.pk == leader.pk,
                "live": live,
                "node": names.of(m.ultraserver.network_node_id) if path else "",
                "reason": names.scrub(m.state_reason),
                "hops": to_leader,
            }
        )
    replacements = [
        {
            "r": r,
            "failed": r.failed_member.ultraserver,
            "replacement": r.replacement,
            "why": explanation(r.explanation, names) if r.explanation else None,
        }
        for r in UnitReplacement.objects.filter(unit=unit)
        .select_related("failed_member__ultraserver", "replacement")
        .order_by("-created_at", "id")
    ]
    in_fabric = [p for p in paths if p]
    common = lowest_common_node(in_fabric) if in_fabric and len(in_fabric) == len(paths) else None
    return {
        "members": rows,
        "live_count": len(current),
        "leader": leader,
        "measured": {
            "mean_hops": mean_hops(paths) if paths and all(paths) else None,
            "max_hops": max_hops(paths) if paths and all(paths) else None,
            "lowest_common_node": names.of(int(common)) if common else "",
        },
        "explanation": explanation(unit.explanation, names),
        "replacements": replacements,
        "colour": unit_colour(unit.pk),
        "hex": PALETTE[unit_colour(unit.pk)],
        "node_names_real": names.real,
        "reason": names.scrub(unit.state_reason),
    }
