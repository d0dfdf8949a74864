"""Inventory changes that do more than save a row."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction

from factory import wire
from factory.inventory import lifecycle
from factory.inventory.models import Chip, ComponentFirmware, PowerFeed, Site, UltraServer
from factory.inventory.models.power import budget_problem_without
from tenants.errors import Conflict
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
