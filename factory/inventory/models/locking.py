"""Row locks that make capacity checks safe under concurrency.

Two placements into one rack must not both pass the budget check. Every change that touches a
budget locks the site rows, then the rack rows (always that order, each by primary key), before
it validates. Outside a transaction (e.g. a plain ``full_clean()`` in a shell) nothing is locked.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection


def lock_capacity_scope(site_ids: Iterable[int | None] = (), rack_ids: Iterable[int | None] = ()):
    if not connection.in_atomic_block:
        return
    from factory.inventory.models import Rack, Site

    sites = sorted({pk for pk in site_ids if pk is not None})
    racks = sorted({pk for pk in rack_ids if pk is not None})
    if sites:
        list(Site.objects.select_for_update().filter(pk__in=sites).order_by("pk").values_list("pk"))
    if racks:
        list(Rack.objects.select_for_update().filter(pk__in=racks).order_by("pk").values_list("pk"))
