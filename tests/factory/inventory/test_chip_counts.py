"""Chip counts per server are kept by the database in the transaction of every change, and the
fleet, capacity and metrics reads use them: their query counts stay flat from 10 to 1,000
servers, and none of them reads the chip table except through the index of unwell chips."""

from __future__ import annotations

import re
import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from factory.catalog.models import UltraServerModel
from factory.inventory.choices import ChipHealth
from factory.inventory.models import Chip, ChipCounts, Rack, UltraServer
from factory.inventory.services import recount_chips
from tests.support.fleet import make_rack, make_server

pytestmark = pytest.mark.django_db


def kept(server: UltraServer) -> dict[str, int]:
    row = ChipCounts.objects.filter(ultraserver=server).values(*ChipCounts.STATES).first()
    return row or dict.fromkeys(ChipCounts.STATES, 0)


def counted(server: UltraServer) -> dict[str, int]:
    out = dict.fromkeys(ChipCounts.STATES, 0)
    for health in Chip.objects.filter(ultraserver=server).values_list("health", flat=True):
        out[health] += 1
    return out


def test_every_kind_of_write_keeps_the_counts(fleet):
    server = fleet.servers["alpha"]
    assert kept(server) == {"ok": 144, "degraded": 0, "failed": 0, "unknown": 0}

    # The API (a person setting a chip's health).
    chip = server.chips.get(index=3)
    response = fleet.client("provider_admin").patch(
        f"/api/v1/chips/{chip.pk}/", {"health": "failed"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert kept(server) == {"ok": 143, "degraded": 0, "failed": 1, "unknown": 0}

    # A queryset update, as burn-in writes it; one that changes no health writes nothing.
    Chip.objects.filter(ultraserver=server, index__in=[5, 6]).update(health=ChipHealth.DEGRADED)
    Chip.objects.filter(ultraserver=server).update(health_note="looked at")
    assert kept(server) == {"ok": 141, "degraded": 2, "failed": 1, "unknown": 0}

    # Raw SQL, past the ORM altogether.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE inventory_chip SET health = 'unknown' WHERE ultraserver_id = %s AND index = 9",
            [server.pk],
        )
    assert kept(server) == {"ok": 140, "degraded": 2, "failed": 1, "unknown": 1}

    # A chip moved to another server counts there, not here.
    other = fleet.servers["beta"]
    Chip.objects.filter(ultraserver=server, index=5).update(ultraserver=other, index=500)
    assert kept(server) == {"ok": 140, "degraded": 1, "failed": 1, "unknown": 1}
    assert kept(other) == {"ok": 144, "degraded": 1, "failed": 0, "unknown": 0}

    # A deleted chip, a new server's chips, a rolled-back change.
    Chip.objects.filter(ultraserver=server, index=3).delete()
    assert kept(server)["failed"] == 0
    new = make_server("ALP1-SRV2", rack=make_rack(fleet.sites["alpha"], "ALP1-R02"))
    assert kept(new)["ok"] == 144
    with pytest.raises(RuntimeError), transaction.atomic():
        Chip.objects.filter(ultraserver=new).update(health=ChipHealth.FAILED)
        assert kept(new)["failed"] == 144  # in the same transaction
        raise RuntimeError
    assert kept(new) == {"ok": 144, "degraded": 0, "failed": 0, "unknown": 0}

    for s in (server, other, new):
        assert kept(s) == counted(s)
    assert recount_chips() == []

    # A deleted server takes its counts with it.
    UltraServer.objects.filter(pk=new.pk).delete()
    assert not ChipCounts.objects.filter(ultraserver_id=new.pk).exists()
    assert recount_chips() == []


def test_recount_finds_and_fixes_counts_written_past_the_triggers(fleet):
    server = fleet.servers["alpha"]
    ChipCounts.objects.filter(ultraserver=server).update(failed=7)  # as a bad restore would
    with pytest.raises(CommandError, match="1 servers' chip counts differ"):
        call_command("recount_chips")
    assert recount_chips() == [
        (
            server.pk,
            {"ok": 144, "degraded": 0, "failed": 7, "unknown": 0},
            {"ok": 144, "degraded": 0, "failed": 0, "unknown": 0},
        )
    ]
    call_command("recount_chips", "--fix")
    assert kept(server) == counted(server)
    call_command("recount_chips")  # clean now: no error


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_changes_to_one_servers_chips_both_count(fleet):
    """Two transactions fail different chips of one server, the second while the first has not
    committed. A count recomputed in the second would miss the first's change (READ COMMITTED
    snapshot); deltas add up (the second waits on the counts row, then adds to what is there)."""
    server = fleet.servers["alpha"]
    first_written = threading.Event()
    errors: list[BaseException] = []

    def fail(index: int) -> None:
        try:
            if index == 2:
                assert first_written.wait(timeout=10)
            with transaction.atomic():
                Chip.objects.filter(ultraserver=server, index=index).update(
                    health=ChipHealth.FAILED
                )
                if index == 1:
                    first_written.set()
                    time.sleep(0.5)  # the second is now waiting behind this transaction
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=fail, args=(i,)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert kept(server) == {"ok": 142, "degraded": 0, "failed": 2, "unknown": 0}
    assert recount_chips() == []


# --- reads whose cost does not grow with the fleet ----------------------------------------------


def grow(site, to: int) -> None:
    """Servers (one per rack, two chips each: the chip count changes no query count) at ``site``
    until it holds ``to``; bulk writes, so the triggers see multi-row statements."""
    model = UltraServerModel.objects.get(slug="trn3-ultraserver")
    have = UltraServer.objects.filter(rack__site=site).count()
    racks = Rack.objects.bulk_create(
        Rack(
            site=site, name=f"{site.code}-G{i:04d}", cooling_type="liquid", cooling_capacity_kw=250
        )
        for i in range(have, to)
    )
    servers = UltraServer.objects.bulk_create(
        UltraServer(
            serial=f"{site.code}-G{i:04d}",
            model=model,
            rack=rack,
            position=1,
            tenant_id=site.tenant_id,
            lifecycle_state="in-service",
        )
        for i, rack in zip(range(have, to), racks, strict=True)
    )
    Chip.objects.bulk_create(
        Chip(ultraserver=s, index=i, serial=f"{s.serial}-C{i}", health=health)
        for s in servers
        for i, health in enumerate(("ok", "failed" if s.pk % 10 == 0 else "ok"))
    )


def reads(site) -> dict[str, str]:
    rack = Rack.objects.filter(site=site).order_by("pk").first()
    return {
        "fleet page": "/console/",
        "site page": f"/console/sites/{site.pk}/",
        "rack page": f"/console/racks/{rack.pk}/",
        "capacity/sites": "/api/v1/capacity/sites/",
        "metrics": "/metrics",
    }


#: A query that reads the chip table only through the unwell-chips index names a health.
_CHIP_TABLE = re.compile(r'FROM "inventory_chip"|JOIN "inventory_chip" ')


def queries_of(client, path: str) -> list[str]:
    client.get(path)  # once first: a token's first use of the day and such write once
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, (path, response.content[:300])
    return [q["sql"] for q in captured.captured_queries]


@pytest.mark.slow
def test_fleet_capacity_and_metrics_queries_stay_flat_from_10_to_1000_servers(fleet, client):
    site = fleet.sites["alpha"]
    client.force_login(get_user_model().objects.get(username="padmin"))
    api = fleet.client("provider_admin")
    clients = {"fleet page": client, "site page": client, "rack page": client}
    paths = reads(site)

    grow(site, 10)
    small = {name: queries_of(clients.get(name, api), path) for name, path in paths.items()}
    grow(site, 1000)
    assert UltraServer.objects.filter(rack__site=site).count() == 1000
    large = {name: queries_of(clients.get(name, api), path) for name, path in paths.items()}

    for name in paths:
        assert len(large[name]) == len(small[name]), (name, len(small[name]), len(large[name]))
        for sql in large[name]:
            if _CHIP_TABLE.search(sql):
                assert "\"health\" = 'failed'" in sql or '"health" = %s' in sql, (name, sql)

    # What they read is what the chips say.
    failed = Chip.objects.filter(ultraserver__rack__site=site, health="failed").count()
    assert failed == 100
    capacity = api.get(f"/api/v1/capacity/sites/{site.pk}/").json()
    assert capacity["chips"]["failed"] == failed
    assert capacity["chips"]["total"] == Chip.objects.filter(ultraserver__rack__site=site).count()
    text = client.get("/metrics").content.decode()
    assert f'factory_chips{{health="failed",site="{site.code}"}} {float(failed)}' in text
