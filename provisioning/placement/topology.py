"""Read side of ``instance-topology/`` and the scheduler exports: which UltraServers the caller
sees, where each hangs in the EFA fabric (as per-tenant hashed ids), what reservation holds it
now and which unit it is a member of. The shaping is the pure ``provisioning.placement.exports``.

Every read is a fixed number of queries however many servers a page or an export holds: the
servers, the fabric of their sites, the reservations holding them, their unit memberships.

Scope is ``tenants.access``'s: a tenant's people see the servers of their tenants (by site or by
allocation); provider roles see all. Ids are hashed with the tenant that owns the server (its
rack's site's tenant, else the tenant it is allocated to, else its switch's site's), for
provider roles too: what the provider reads is what the tenant reads, and no view shows the
provider's switch names.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.crypto import salted_hmac

from factory.inventory.models import NetworkNode, Site, UltraServer
from provisioning.placement import exports
from provisioning.placement.choices import HOLDING_MEMBER_STATES, HOLDING_RESERVATION_STATES
from provisioning.placement.exports import ServerTopology, UnitRef
from provisioning.placement.models import CapacityReservation, ReservedServer, UnitMember
from tenants.access import Actor, scope_queryset

#: Lookups from an UltraServer to the tenants that see it (as ``ultraservers/`` scopes it).
SERVER_TENANT_FIELDS = ("rack__site__tenant", "tenant")
#: Memberships that tie a server to its unit (the one-unit-at-a-time constraint's states).


@functools.cache
def _secret_for(configured: str | None, secret_key: str) -> bytes:
    if configured:
        return configured.encode()
    return salted_hmac(
        "provisioning.placement.topology", "network node ids", secret=secret_key
    ).digest()


def id_secret() -> bytes:
    """The key of the hashed ids: ``TOPOLOGY_ID_SECRET`` if set, else derived from
    ``SECRET_KEY`` (rotating either changes every id a tenant has seen)."""
    return _secret_for(getattr(settings, "TOPOLOGY_ID_SECRET", None), settings.SECRET_KEY)


@dataclass(frozen=True)
class Filters:
    """``instance-topology/``'s filters, already checked by the view."""

    ultraservers: tuple[str, ...] = ()  # ids or serials
    unit: int | None = None
    reservation: int | None = None

    def key(self) -> str:
        """What a ``NextToken`` is bound to (a token of another query is refused): a digest,
        so a token stays short however many servers the query names."""
        text = json.dumps([sorted(self.ultraservers), self.unit, self.reservation])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _visible(actor: Actor, lookup: str) -> Q:
    """Rows whose ``lookup`` tenant the actor sees (everything for provider roles)."""
    visible = actor.visible_tenant_ids()
    return Q() if visible is None else Q(**{f"{lookup}__in": visible})


def visible_servers(actor: Actor) -> QuerySet[UltraServer]:
    return scope_queryset(UltraServer.objects.all(), actor, SERVER_TENANT_FIELDS)


def visible_reservations(actor: Actor) -> QuerySet[CapacityReservation]:
    return scope_queryset(CapacityReservation.objects.all(), actor, ("tenant",))


def visible_sites(actor: Actor) -> QuerySet[Site]:
    return scope_queryset(Site.objects.all(), actor, ("tenant",))


def filtered(actor: Actor, filters: Filters) -> QuerySet[UltraServer]:
    """The servers ``filters`` name among those ``actor`` sees. Another tenant's (or an
    unknown) unit or reservation matches nothing, as the repo's relation filters do."""
    servers = visible_servers(actor)
    if filters.ultraservers:
        ids = [int(v) for v in filters.ultraservers if v.isascii() and v.isdigit()]
        named = Q(serial__in=list(filters.ultraservers))
        if ids:
            named |= Q(pk__in=[i for i in ids if i < 2**63])
        servers = servers.filter(named)
    if filters.unit is not None:
        members = UnitMember.objects.filter(
            _visible(actor, "unit__tenant"), unit_id=filters.unit, state__in=HOLDING_MEMBER_STATES
        )
        servers = servers.filter(pk__in=members.values("ultraserver_id"))
    if filters.reservation is not None:
        holds = ReservedServer.objects.filter(
            _visible(actor, "reservation__tenant"), reservation_id=filters.reservation
        )
        servers = servers.filter(pk__in=holds.values("ultraserver_id"))
    return servers


_ROW = (
    "id",
    "serial",
    "model__slug",
    "tenant_id",
    "rack__site_id",
    "rack__site__code",
    "rack__site__tenant_id",
    "network_node_id",
    "network_node__site_id",
    "network_node__site__tenant_id",
)


def _shape(actor: Actor, rows: Sequence[dict]) -> list[ServerTopology]:
    """``rows`` (values of ``_ROW``) as the tenant sees them: three more queries whatever
    their number (the fabric of their sites, the holds now, the memberships)."""
    if not rows:
        return []
    ids = [row["id"] for row in rows]
    site_ids = {row["network_node__site_id"] for row in rows if row["network_node_id"]}
    parents: dict[int, int | None] = dict(
        NetworkNode.objects.filter(site_id__in=site_ids).values_list("id", "parent_id")
    )
    now = timezone.now()
    held: dict[int, int] = {}
    for server_id, reservation_pk in (
        ReservedServer.objects.filter(
            _visible(actor, "reservation__tenant"),
            ultraserver_id__in=ids,
            reservation__state__in=HOLDING_RESERVATION_STATES,
            starts_at__lte=now,
            ends_at__gt=now,
        )
        .order_by("starts_at", "reservation_id")
        .values_list("ultraserver_id", "reservation_id")
    ):
        held.setdefault(server_id, reservation_pk)
    units: dict[int, UnitRef] = {}
    for server_id, unit_pk, name, role, state in (
        UnitMember.objects.filter(
            _visible(actor, "unit__tenant"), ultraserver_id__in=ids, state__in=HOLDING_MEMBER_STATES
        )
        .order_by("id")
        .values_list("ultraserver_id", "unit_id", "unit__name", "role", "state")
    ):
        units.setdefault(server_id, UnitRef(unit_pk, name, role, state))
    secret = id_secret()
    shaped = []
    for row in rows:
        tenant_id = (
            row["rack__site__tenant_id"] or row["tenant_id"] or row["network_node__site__tenant_id"]
        )
        path = exports.node_path(row["network_node_id"], parents)
        # Its site is its rack's: a server allocated to a tenant off that tenant's premises
        # does not tell it whose site its switch is in.
        site_id, site_code = row["rack__site_id"], row["rack__site__code"]
        holder = held.get(row["id"])
        shaped.append(
            ServerTopology(
                id=row["id"],
                serial=row["serial"],
                instance_type=row["model__slug"],
                site_id=site_id,
                site_code=site_code,
                network_nodes=tuple(exports.node_id(secret, tenant_id, pk) for pk in path),
                ultraserver_domain=exports.domain_id(secret, tenant_id, row["id"]),
                capacity_block_id=(exports.reservation_id(holder) if holder is not None else None),
                unit=units.get(row["id"]),
            )
        )
    return shaped


def describe(
    actor: Actor, filters: Filters, *, after: int | None, limit: int
) -> tuple[list[ServerTopology], int | None]:
    """One page of ``instance-topology/``: up to ``limit`` servers with an id above ``after``,
    by id (a keyset: servers added or removed between pages shift nothing), and the id to
    continue after, or None on the last page."""
    servers = filtered(actor, filters)
    if after is not None:
        servers = servers.filter(pk__gt=after)
    rows = list(servers.order_by("pk").values(*_ROW)[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return _shape(actor, rows), (rows[-1]["id"] if more and rows else None)


def site_servers(actor: Actor, site: Site) -> list[ServerTopology]:
    """Every server the actor sees in a rack at ``site``."""
    servers = visible_servers(actor).filter(rack__site=site)
    return _shape(actor, list(servers.order_by("pk").values(*_ROW)))


def reservation_servers(actor: Actor, reservation: CapacityReservation) -> list[ServerTopology]:
    """Every server ``reservation`` holds that the actor sees."""
    held = ReservedServer.objects.filter(reservation=reservation).values("ultraserver_id")
    servers = visible_servers(actor).filter(pk__in=held)
    return _shape(actor, list(servers.order_by("pk").values(*_ROW)))
