"""The chips that are not well are found by an index, not by reading every chip: the health
sweep's and placement's question ("which servers have failed chips?") on 40 Trn3 UltraServers
(5,760 chips, 3 failed) is an index scan of ``chip_unwell``, which holds only those three."""

from __future__ import annotations

import pytest
from django.db import connection

from factory.inventory.choices import ChipHealth
from factory.inventory.models import Chip
from tests.support.fleet import make_server

pytestmark = pytest.mark.django_db


def test_failed_chips_are_found_through_the_partial_index(fleet):
    servers = [make_server(f"IDX-{i}") for i in range(40)]
    assert Chip.objects.filter(ultraserver__in=servers).count() == 40 * 144
    for server in servers[:3]:
        Chip.objects.filter(ultraserver=server, index=7).update(health=ChipHealth.FAILED)
    with connection.cursor() as cursor:
        cursor.execute(f'ANALYZE "{Chip._meta.db_table}"')
        query = Chip.objects.filter(health=ChipHealth.FAILED).values("ultraserver_id")
        sql, params = query.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(
            "SELECT pg_relation_size(%s), pg_relation_size(%s)",
            ["chip_unwell", Chip._meta.db_table],
        )
        index_bytes, table_bytes = cursor.fetchone()
    assert "chip_unwell" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert sorted(query.values_list("ultraserver_id", flat=True)) == sorted(
        s.pk for s in servers[:3]
    )
    assert index_bytes * 10 < table_bytes  # it holds the unwell (its two pages), not the fleet
