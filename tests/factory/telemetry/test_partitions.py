"""Raw samples in day partitions: retention drops whole days, strays are never lost, and a
partition held by a reader is left for the next run instead of stalling ingest."""

from __future__ import annotations

import datetime as dt
import itertools
import threading

import psycopg
import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from factory.telemetry import partitions, services
from factory.telemetry.models import ServerSample
from tests.support.telemetry import agent_client, post, server_report

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="declarative partitioning is PostgreSQL's"
)


def _sample(server, ts: dt.datetime) -> ServerSample:
    return ServerSample.objects.create(ultraserver=server, ts=ts, chips=144)


def _held_by(ts: dt.datetime) -> str:
    """The partition a row of ``ts`` is stored in (its table's name)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tableoid::regclass::text FROM {partitions.TABLE} WHERE ts = %s", [ts]
        )
        return cursor.fetchone()[0]


def _table_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [name])
        return cursor.fetchone()[0] is not None


@pytest.mark.django_db
def test_the_migrated_table_is_partitioned_by_day_with_days_ahead():
    assert partitions.enabled()
    days = partitions.partitions()
    today = partitions.day_start(timezone.now())
    assert days[0].lower is None and days[0].upper > today  # the table as it was, and today
    uppers = [p.upper for p in days]
    assert uppers == sorted(uppers) and days[-1].upper >= today + dt.timedelta(days=3)
    for earlier, later in itertools.pairwise(days):
        assert later.lower == earlier.upper  # no gap, no overlap


def test_ingested_samples_land_in_their_day_and_a_duplicate_is_still_refused(fleet):
    server = fleet.servers["alpha"]
    client, _ = agent_client(fleet.sites["alpha"])
    ts = timezone.now().replace(microsecond=0)
    assert post(client, [server_report(server.serial, 1, ts)]).json()["accepted"] == 1
    assert post(client, [server_report(server.serial, 1, ts)]).json()["accepted"] == 0
    assert ServerSample.objects.filter(ultraserver=server).count() == 1
    assert _held_by(ts) != partitions.DEFAULT


def test_a_sample_past_the_days_made_waits_in_the_default_and_moves_into_its_day(fleet):
    server = fleet.servers["alpha"]
    far = timezone.now().replace(microsecond=0) + dt.timedelta(days=40)
    _sample(server, far)
    assert _held_by(far) == partitions.DEFAULT
    made = partitions.ensure(far, ahead_days=0)
    assert made == [partitions.day_name(partitions.day_start(far))]
    assert _held_by(far) == made[0]  # moved, not lost
    assert ServerSample.objects.filter(ts=far).count() == 1
    assert partitions.ensure(far, ahead_days=0) == []  # made once


def test_retention_drops_the_days_wholly_past_it_and_keeps_the_rest(fleet):
    server = fleet.servers["alpha"]
    start = partitions.day_start(timezone.now()) + dt.timedelta(days=10)
    partitions.ensure(start, ahead_days=2)
    old, kept = start + dt.timedelta(hours=5), start + dt.timedelta(days=1, hours=5)
    _sample(server, old)
    _sample(server, kept)
    stray = start - dt.timedelta(days=2)  # a day no partition was made for
    _sample(server, stray)
    assert _held_by(stray) == partitions.DEFAULT
    # One day after the old sample's day ends, with a day's retention: that day is all past.
    now = start + dt.timedelta(days=2)
    with override_settings(TELEMETRY_RAW_RETENTION_HOURS=24):
        removed = services.expire(now=now)
    dropped = partitions.day_name(start)
    assert dropped in removed["raw_partitions_dropped"]
    assert not _table_exists(dropped)
    assert removed["raw"] == 1  # the stray, deleted from the default partition
    assert list(ServerSample.objects.values_list("ts", flat=True)) == [kept]
    assert (
        partitions.day_name(start + dt.timedelta(days=1)) not in removed["raw_partitions_dropped"]
    )
    assert partitions.partitions()[-1].upper >= now + dt.timedelta(days=3)  # days made ahead


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_partition_a_reader_holds_is_left_for_the_next_run():
    """DROP waits for the lock only ``lock_timeout``: ingest and readers are not stalled
    behind it, and the next run drops it."""
    oldest = partitions.partitions()[0]
    settings = connection.settings_dict
    holding, release = threading.Event(), threading.Event()

    def reader() -> None:
        with psycopg.connect(
            host=settings["HOST"] or None,
            port=settings["PORT"] or None,
            user=settings["USER"],
            dbname=settings["NAME"],
            password=settings["PASSWORD"] or None,
        ) as other:
            other.execute(f"SELECT count(*) FROM {oldest.name}")  # holds ACCESS SHARE
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert holding.wait(10)
        started = timezone.now()
        assert partitions.drop_before(oldest.upper, lock_timeout="200ms") == []
        assert (timezone.now() - started).total_seconds() < 5
        assert _table_exists(oldest.name)
    finally:
        release.set()
        thread.join()
