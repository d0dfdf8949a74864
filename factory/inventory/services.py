"""Inventory changes that do more than save a row."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from typing import Any, cast

from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from factory import wire
from factory.inventory import lifecycle
from factory.inventory.models import (
    Chip,
    ChipCounts,
    ComponentFirmware,
    PowerFeed,
    Site,
    UltraServer,
)
from factory.inventory.models.power import budget_problem_without
from factory.inventory.selectors import chip_counts_by
from tenants.choices import AuditAction
from tenants.errors import Conflict, FieldError, NotFound
from tenants.services import audit
from tenants.services.changes import ChangeContext, delete_object, save_object
from tenants.sovereignty.services import facts

log = logging.getLogger(__name__)


def _create_chips(server: UltraServer, creating: bool) -> None:
    if creating:
        Chip.objects.bulk_create(
            Chip(ultraserver=server, index=i, serial=f"{server.serial}-C{i:03d}")
            for i in range(server.model.chip_count)
        )


def _refuse_invalid_transition(server: UltraServer) -> None:
    if server.pk is None:
        if server.lifecycle_state != lifecycle.PLANNED:
            raise Conflict(
                f"a new UltraServer starts 'planned', not '{server.lifecycle_state}'; "
                "a deploy workflow moves it on",
                code="invalid_transition",
                field="lifecycle_state",
            )
        return
    current = (
        UltraServer.objects.filter(pk=server.pk).values_list("lifecycle_state", flat=True).first()
    )
    if current is not None:
        lifecycle.check_transition(server.serial, current, server.lifecycle_state)


def save_site(site: Site, ctx: ChangeContext) -> Site:
    """Create or change a site (API, admin). Its country, accreditations and air-gapped flag are
    facts tenants' rules depend on: audited into every affected tenant's log, and held back with
    notice when they would flip a live decision (``tenants.sovereignty.services.facts``)."""
    return facts.save_site(site, ctx)


def save_ultraserver(server: UltraServer, ctx: ChangeContext) -> UltraServer:
    """Create or change an UltraServer; a new one gets its chips (e.g. 144 for a Trn3).
    Lifecycle changes must follow the whitelist (409 naming the current state)."""
    with transaction.atomic():
        if server.pk is not None:
            # Fields only the system sets come from the locked row, not from an instance read
            # before it: an isolation recorded meanwhile is not undone by a stale save.
            stored = (
                UltraServer.objects.select_for_update()
                .filter(pk=server.pk)
                .values(*SYSTEM_MANAGED)
                .first()
            )
            for name, value in (stored or {}).items():
                setattr(server, name, value)
        _refuse_invalid_transition(server)
        return save_object(server, ctx, after_save=_create_chips)


#: UltraServer fields no API or admin save changes: set by isolation, heartbeats and the
#: stale-agent job through their own paths.
SYSTEM_MANAGED = ("isolated_since", "isolation_reason", "unreachable_since", "last_heartbeat_at")


def transition(
    server_id: int, wanted: str, ctx: ChangeContext, *, fields: dict[str, Any] | None = None
) -> UltraServer:
    """Move an UltraServer along its lifecycle (and set ``fields`` with it), audited.

    Lighter than ``save_ultraserver``: a lifecycle change cannot break placement, so the
    power and cooling checks are not re-run. Locks the row; raises ``InvalidTransition``.
    Inside a caller's transaction (a workflow step) it adds no savepoint: all or nothing."""
    with transaction.atomic(savepoint=False):
        server = (
            UltraServer.objects.select_for_update(of=("self",))
            .select_related("rack__site")
            .get(pk=server_id)
        )
        return transition_locked(server, wanted, ctx, fields=fields)


def transition_locked(
    server: UltraServer, wanted: str, ctx: ChangeContext, *, fields: dict[str, Any] | None = None
) -> UltraServer:
    """``transition`` for a caller that already holds ``server``'s row lock in its open
    transaction (the workflow engine locks a batch of servers in one statement)."""
    lifecycle.check_transition(server.serial, server.lifecycle_state, wanted)
    before = audit.snapshot(server)
    server.lifecycle_state = wanted
    for name, value in (fields or {}).items():
        setattr(server, name, value)
    after = audit.snapshot(server)
    changed = [name for name, value in after.items() if before.get(name) != value]
    if changed:
        server.save(update_fields=[*changed, "updated_at"])
        audit.record_change(ctx, server, before)
    return server


def _refuse_if_budget_breaks(feed: PowerFeed) -> None:
    problem = budget_problem_without(feed, replacement=None)
    if problem:
        code, message = problem
        raise Conflict(message, code=code, field="rack")


def delete_power_feed(feed: PowerFeed, ctx: ChangeContext) -> None:
    """Remove a feed, unless the rack's load would then exceed what the remaining feeds carry."""
    delete_object(feed, ctx, before_delete=_refuse_if_budget_breaks)


_COMPONENTS = frozenset(wire.FirmwareComponent)


def record_firmware_inventory(
    readings: Iterable[tuple[int, Mapping[str, object]]], observed_at: dt.datetime
) -> int:
    """Store each server's ``{component: version}`` as read from its BMC (a command result's
    ``HardwareState.FIRMWARE_INVENTORY``): one row per server and component, the latest read
    winning. A component outside the contract is skipped and logged rather than refused: the
    command result that carries it is already the truth about the command."""
    rows: dict[tuple[int, str], ComponentFirmware] = {}
    for server_id, inventory in readings:
        for component, version in inventory.items():
            if component not in _COMPONENTS or not isinstance(version, str) or not version:
                log.warning(
                    "firmware inventory of server %s: %r=%r skipped", server_id, component, version
                )
                continue
            rows[(server_id, component)] = ComponentFirmware(
                ultraserver_id=server_id,
                component=component,
                version=version[:64],
                observed_at=observed_at,
            )
    if rows:
        ComponentFirmware.objects.bulk_create(
            list(rows.values()),
            update_conflicts=True,
            unique_fields=["ultraserver", "component"],
            update_fields=["version", "observed_at"],
        )
    return len(rows)


#: The states a server may be put in service from by ``put_in_service``: deployed and idle
#: (``ready``), or in service already (nothing to do).
PUT_IN_SERVICE_FROM = frozenset({lifecycle.READY, lifecycle.IN_SERVICE})


def put_in_service(
    server_ids: list[int], ctx: ChangeContext, *, reason: str = "", field: str = "ultraservers"
) -> list[UltraServer]:
    """Put many deployed servers in service in one transaction, all or nothing: the
    lifecycle whitelist of a single change, and only from ``ready`` (a server a workflow holds
    or one flagged for maintenance is refused, naming it as ``<field>[i]``). One lock, one
    update and one insert of audit events (one per server changed), however many servers.
    A server already in service is left as it is. Returns the servers it changed."""
    with transaction.atomic():
        servers = {
            server.pk: server
            for server in UltraServer.objects.select_for_update(of=("self",))
            .select_related("rack__site")
            .filter(pk__in=server_ids)
            .order_by("pk")
        }
        missing = [
            FieldError(f"{field}[{i}]", "not_found", f"no UltraServer with id {pk}")
            for i, pk in enumerate(server_ids)
            if pk not in servers
        ]
        if missing:
            raise NotFound(errors=missing)
        refusals: list[FieldError] = []
        changing: list[UltraServer] = []
        for index, pk in enumerate(server_ids):
            server = servers[pk]
            where = f"{field}[{index}]"
            state = server.lifecycle_state
            if state not in PUT_IN_SERVICE_FROM:
                allowed = lifecycle.can_transition(state, lifecycle.IN_SERVICE)
                refusals.append(
                    FieldError(
                        where,
                        "invalid_transition",
                        f"UltraServer {server.serial} is '{state}': only a ready one is put in "
                        "service here"
                        + (" (a workflow moves it on from there)" if allowed else ""),
                    )
                )
            elif server.in_maintenance and state != lifecycle.IN_SERVICE:
                refusals.append(
                    FieldError(
                        where,
                        "in_maintenance",
                        f"UltraServer {server.serial} is flagged for maintenance"
                        + (f" ({server.fault_reason})" if server.fault_reason else ""),
                    )
                )
            elif state == lifecycle.READY:
                changing.append(server)
        if refusals:
            raise Conflict(
                f"{len(refusals)} of {len(server_ids)} UltraServers cannot be put in service "
                f"({refusals[0].message}); nothing was changed",
                code=refusals[0].code,
                errors=refusals,
            )
        now = timezone.now()
        befores = {server.pk: audit.snapshot(server) for server in changing}
        for server in changing:
            server.lifecycle_state, server.updated_at = lifecycle.IN_SERVICE, now
        UltraServer.objects.filter(pk__in=[s.pk for s in changing]).update(
            lifecycle_state=lifecycle.IN_SERVICE, updated_at=now
        )
        audit.record_many(
            ((server, befores[server.pk], audit.snapshot(server)) for server in changing),
            actor=ctx.actor,
            action=AuditAction.UPDATE,
            source=ctx.source,
            request_id=ctx.request_id,
            reason=reason,
            **ctx.attribution(),
        )
    return changing


def recount_chips(*, fix: bool = False) -> list[tuple[int, dict[str, int], dict[str, int]]]:
    """Servers whose kept chip counts differ from their chips: ``(server, kept, counted)``.

    The triggers keep ``ChipCounts`` in every write's transaction, so this finds nothing
    unless something bypassed them (a restore of the table alone, a trigger dropped by hand);
    ``fix`` then writes the counted values, under a lock on the chips so no change slips by.
    """

    states = ChipCounts.STATES
    with transaction.atomic():
        if fix and connection.vendor == "postgresql":
            # Writers wait until the fix commits; readers do not (SQLite's writes are serial).
            with connection.cursor() as cursor:
                cursor.execute(f'LOCK TABLE "{Chip._meta.db_table}" IN SHARE MODE')
        counted: dict[int, dict[str, int]] = {}
        for row in (
            Chip.objects.order_by()
            .values("ultraserver_id")
            .annotate(**{s: Count("pk", filter=Q(health=s)) for s in states})
        ):
            values = cast("dict[str, Any]", row)
            counted[values["ultraserver_id"]] = {s: values[s] for s in states}
        kept = chip_counts_by("ultraserver_id")
        zero = dict.fromkeys(states, 0)
        wrong = [
            (server_id, kept.get(server_id, zero), counted.get(server_id, zero))
            for server_id in sorted(set(counted) | set(kept))
            if kept.get(server_id, zero) != counted.get(server_id, zero)
        ]
        if fix:
            for server_id, _, right in wrong:
                ChipCounts.objects.update_or_create(ultraserver_id=server_id, defaults=right)
    return wrong
