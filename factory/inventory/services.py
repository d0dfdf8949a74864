"""Inventory changes that do more than save a row."""

from __future__ import annotations

from factory.inventory.models import Chip, PowerFeed, UltraServer
from factory.inventory.models.power import budget_problem_without
from tenants.services.changes import ChangeContext, ChangeRefused, delete_object, save_object


def _create_chips(server: UltraServer, creating: bool) -> None:
    if creating:
        Chip.objects.bulk_create(
            Chip(ultraserver=server, index=i, serial=f"{server.serial}-C{i:03d}")
            for i in range(server.model.chip_count)
        )


def save_ultraserver(server: UltraServer, ctx: ChangeContext) -> UltraServer:
    """Create or change an UltraServer; a new one gets its chips (e.g. 144 for a Trn3)."""
    return save_object(server, ctx, after_save=_create_chips)


def _refuse_if_budget_breaks(feed: PowerFeed) -> None:
    problem = budget_problem_without(feed, replacement=None)
    if problem:
        code, message = problem
        raise ChangeRefused(message, code=code, field="rack")


def delete_power_feed(feed: PowerFeed, ctx: ChangeContext) -> None:
    """Remove a feed, unless the rack's load would then exceed what the remaining feeds carry."""
    delete_object(feed, ctx, before_delete=_refuse_if_budget_breaks)
