"""Incremental roll-ups: each run reads only the raw rows that arrived since the last one,
hours come from minutes, a late sample is still counted, and a second run changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from factory.telemetry import services
from factory.telemetry.models import RollupBacklog, ServerRollup, ServerSample
from tests.support.telemetry import agent_client, post, server_report
from tests.support.workflows import put_in_service


@pytest.fixture
def site(fleet):
    server = put_in_service(fleet.servers["alpha"])
    client, _ = agent_client(fleet.sites["alpha"])
    return client, server


def _minute(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(second=0, microsecond=0)


def _figures(server, resolution: str) -> dict[dt.datetime, tuple]:
    rows = ServerRollup.objects.filter(ultraserver=server, resolution=resolution)
    return {
        r.bucket: (r.samples, r.power_avg_w, r.power_max_w, r.failed_chips_max)
        for r in rows.order_by("bucket")
    }


def test_an_hour_is_the_weighted_mean_of_its_minutes_and_a_rerun_changes_nothing(site):
    client, server = site
    hour = timezone.now().astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    now = hour + dt.timedelta(minutes=5)
    # Minute 1: four samples at 400 W a chip; minute 2: one at 1000 W (a mean of the two
    # minutes' means would be 700 W a chip; the hour's true mean is 520 W).
    stamps = [hour + dt.timedelta(minutes=1, seconds=10 * i) for i in range(4)]
    reports = [
        server_report(server.serial, i + 1, ts, power_w=[400.0] * 144)
        for i, ts in enumerate(stamps)
    ]
    reports.append(
        server_report(server.serial, 5, hour + dt.timedelta(minutes=2), power_w=[1000.0] * 144)
    )
    assert post(client, reports).json()["accepted"] == 5
    run = services.roll_up(now=now)
    assert (run.minutes, run.hours) == (2, 1)
    minutes, hours = _figures(server, "1m"), _figures(server, "1h")
    assert [m[0] for m in minutes.values()] == [4, 1]
    raw = list(
        ServerSample.objects.filter(ultraserver=server).values_list("power_total_w", flat=True)
    )
    assert hours[hour][0] == 5
    assert hours[hour][1] == pytest.approx(sum(raw) / len(raw)) == pytest.approx(520.0 * 144)
    assert hours[hour][2] == max(raw)
    services.roll_up(now=now + dt.timedelta(seconds=30))
    assert _figures(server, "1m") == minutes and _figures(server, "1h") == hours


def test_a_run_reads_only_new_rows_and_a_late_sample_is_counted_from_the_backlog(site):
    client, server = site
    now = timezone.now()
    first = services.roll_up(now=now)
    assert first.since == _minute(now - services.FIRST_LOOKBACK)
    # Written behind ingest's back at half an hour ago: outside the next run's window, and not
    # noted as late, so the next run must not see it (it does not rescan history).
    old = _minute(now - dt.timedelta(minutes=30)) + dt.timedelta(seconds=5)
    ServerSample.objects.create(ultraserver=server, ts=old, chips=144, power_total_w=1.0)
    second = services.roll_up(now=now + dt.timedelta(minutes=1))
    assert second.since == _minute(now - services.REREAD)
    assert _minute(old) not in _figures(server, "1m")
    # A spooled agent catching up sends a sample of that same minute: ingest notes it late,
    # and the next run recomputes the whole minute (both rows) and its hour.
    late = old + dt.timedelta(seconds=20)
    assert post(client, [server_report(server.serial, 1, late)]).json()["accepted"] == 1
    assert list(RollupBacklog.objects.values_list("bucket", flat=True)) == [_minute(old)]
    third = services.roll_up(now=now + dt.timedelta(minutes=2))
    assert third.backlog == 1
    assert _figures(server, "1m")[_minute(old)][0] == 2
    hour = _minute(old).replace(minute=0)
    assert _figures(server, "1h")[hour][0] >= 2
    assert not RollupBacklog.objects.exists()  # taken, once


def test_a_run_costs_the_same_queries_whatever_the_history(site):
    """The window and the backlog are read set-based: a fixed number of statements; a span
    of late minutes (a site's agents catching up share one) adds one read of raw rows and one
    of minutes, and the run then writes minutes and hours and clears the backlog: five."""
    client, server = site
    services.roll_up()
    with CaptureQueriesContext(connection) as quiet:
        services.roll_up()
    start = _minute(timezone.now() - dt.timedelta(hours=2))
    reports = [
        server_report(server.serial, i + 1, start + dt.timedelta(seconds=10 * i)) for i in range(60)
    ]
    assert post(client, reports).json()["accepted"] == 60
    assert RollupBacklog.objects.count() == 10
    with CaptureQueriesContext(connection) as catching_up:
        run = services.roll_up()
    assert run.backlog == 10 and run.minutes >= 10
    assert len(catching_up) <= len(quiet) + 5, [q["sql"][:80] for q in catching_up.captured_queries]
