"""Telemetry is never lost silently: numbering epochs, duplicate samples, the ingest counters and
the freshness fault (issue 13, item 5)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from factory.core import metrics as process
from factory.telemetry import egress, ingest
from factory.telemetry.models import Fault, ServerSample, ServerTelemetry, TelemetrySource
from factory.wire import OEM, FaultRule, ReportKey
from tenants.events.models import Event
from tests.support.fleet import make_rack, make_server
from tests.support.telemetry import agent_client, oem, pdu_report, post, server_report

EPOCH = f"Oem.{OEM}.{ReportKey.EPOCH}"
T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _fresh_egress_decisions():
    egress.forget()
    yield
    egress.forget()


@pytest.fixture
def alpha(fleet):
    client, _ = agent_client(fleet.sites["alpha"])
    return client, fleet.servers["alpha"]


def report(serial: str, epoch: str | None, sequence: int, second: int, **columns) -> dict:
    """A server's report numbered ``sequence`` in ``epoch`` (None: an agent older than
    epochs), its sample taken ``second`` s after T0."""
    body = server_report(serial, sequence, ts=T0 + dt.timedelta(seconds=second), **columns)
    if epoch is not None:
        oem(body)[ReportKey.EPOCH] = epoch
    return body


def watermarks(serial: str) -> dict[str, int]:
    return dict(TelemetrySource.objects.filter(source=serial).values_list("epoch", "last_sequence"))


def counted(name: str, **labels: str) -> float:
    return process.REGISTRY.get_sample_value(name, labels) or 0.0


# --- epochs -------------------------------------------------------------------------------------


def test_an_agent_that_starts_numbering_again_in_a_new_epoch_is_stored(alpha):
    """The issue's loss: a reinstalled agent numbers from 1 while the watermark is far ahead."""
    client, server = alpha
    for sequence in range(1, 41, 10):
        batch = [report(server.serial, "old-outbox", n, n) for n in range(sequence, sequence + 10)]
        assert post(client, batch).json()["accepted"] == 10
    assert watermarks(server.serial) == {"old-outbox": 40}

    answer = post(client, [report(server.serial, "new-outbox", 1, 100)]).json()
    assert (answer["accepted"], answer["replayed"], answer["chip_samples"]) == (1, 0, 144)
    assert ServerSample.objects.filter(ultraserver=server).count() == 41
    assert watermarks(server.serial) == {"old-outbox": 40, "new-outbox": 1}


def test_a_report_sent_again_in_its_epoch_is_a_replay(alpha):
    client, server = alpha
    first = report(server.serial, "e1", 1, 1)
    assert post(client, [first, report(server.serial, "e1", 2, 2)]).json()["accepted"] == 2
    again = post(client, [first, report(server.serial, "e1", 3, 3)]).json()
    assert (again["accepted"], again["replayed"]) == (1, 1)
    assert ServerSample.objects.count() == 3
    assert watermarks(server.serial) == {"e1": 3}


def test_two_agents_numbering_side_by_side_are_both_stored(alpha):
    """An HA pair for one site: each numbers in its own epoch, interleaved, batches of both."""
    client, server = alpha
    mixed = [report(server.serial, epoch, 1, second) for epoch, second in (("a", 1), ("b", 2))]
    assert post(client, mixed).json()["accepted"] == 2
    assert post(client, [report(server.serial, "b", 2, 4)]).json()["accepted"] == 1
    assert post(client, [report(server.serial, "a", 2, 3)]).json()["accepted"] == 1
    stamps = sorted(ServerSample.objects.values_list("ts", flat=True))
    assert stamps == [T0 + dt.timedelta(seconds=s) for s in (1, 2, 3, 4)]
    assert watermarks(server.serial) == {"a": 2, "b": 2}


def test_the_same_sample_under_two_epochs_is_stored_once(alpha):
    """Two agents polled the BMC at the same instant, or a restored outbox resends what the
    control plane has: the (server, Timestamp) is stored, so this is a duplicate."""
    client, server = alpha
    site = server.rack.site.code
    before = {
        o: counted("factory_telemetry_ingest_reports_total", site=site, outcome=o)
        for o in ingest.metrics.OUTCOMES
    }
    samples_before = counted(
        "factory_telemetry_ingest_chip_samples_total", site=site, outcome="duplicate"
    )
    assert post(client, [report(server.serial, "a", 1, 5)]).json()["accepted"] == 1
    twice = post(client, [report(server.serial, "b", 1, 5), report(server.serial, "c", 7, 5)])
    assert twice.json() == {
        "accepted": 0,
        "replayed": 2,
        "chip_samples": 0,
        "dropped_metrics": [],
        "faults_opened": 0,
    }
    assert ServerSample.objects.count() == 1
    # Both epochs are new, so their watermarks moved: a resend of either is a replay now.
    assert watermarks(server.serial) == {"a": 1, "b": 1, "c": 7}
    assert post(client, [report(server.serial, "b", 1, 5)]).json()["replayed"] == 1

    def grew(outcome: str) -> float:
        name = "factory_telemetry_ingest_reports_total"
        return counted(name, site=site, outcome=outcome) - before[outcome]

    assert (grew("stored"), grew("duplicate"), grew("replayed")) == (1, 2, 1)
    assert (
        counted("factory_telemetry_ingest_chip_samples_total", site=site, outcome="duplicate")
        - samples_before
        == 2 * 144
    )


def test_one_sample_twice_in_a_batch_is_stored_once_and_the_rules_see_it_once(alpha):
    client, server = alpha
    failed = [0] * 144
    failed[3] = 2
    one = report(server.serial, "a", 1, 9, health=failed)
    other = report(server.serial, "b", 1, 9, health=failed)
    answer = post(client, [one, other]).json()
    assert (answer["accepted"], answer["replayed"], answer["faults_opened"]) == (1, 1, 1)
    assert ServerSample.objects.count() == 1
    assert Fault.objects.filter(rule=FaultRule.CHIP_DOWN).count() == 1


def test_reports_of_agents_older_than_epochs_count_in_the_legacy_epoch(alpha):
    client, server = alpha
    assert post(client, [report(server.serial, None, 1, 1)]).json()["accepted"] == 1
    assert post(client, [report(server.serial, None, 1, 1)]).json()["replayed"] == 1
    assert watermarks(server.serial) == {"": 1}
    # An upgraded agent's first epoch starts from 1 beside it.
    assert post(client, [report(server.serial, "new", 1, 2)]).json()["accepted"] == 1
    assert watermarks(server.serial) == {"": 1, "new": 1}


def test_a_batch_with_an_epoch_on_some_reports_only_is_refused_and_counted(fleet, alpha):
    client, server = alpha
    site = server.rack.site.code
    rack = fleet.racks["alpha"]
    reports = "factory_telemetry_ingest_rejected_reports_total"
    chips = "factory_telemetry_ingest_rejected_chip_samples_total"
    before = counted(reports, site=site, reason="epoch_required")
    pdu = pdu_report(f"{rack.name}-PDU", 1, {})
    response = post(client, [report(server.serial, "e", 1, 1), pdu])
    assert response.status_code == 400, response.content
    assert response.json()["errors"][0] == {
        "field": f"reports[1].{EPOCH}",
        "code": "epoch_required",
        "message": "Other reports of this batch carry a ReportEpoch; every report must.",
    }
    assert not ServerSample.objects.exists() and not TelemetrySource.objects.exists()
    assert counted(reports, site=site, reason="epoch_required") - before == 2
    # Refused after its servers were looked up: their chip samples are counted too.
    other = fleet.servers["beta"].serial
    chips_before = counted(chips, site=site, reason="other_site")
    reports_before = counted(reports, site=site, reason="other_site")
    assert (
        post(client, [report(server.serial, None, 1, 1), report(other, None, 1, 1)]).status_code
        == 403
    )
    assert counted(reports, site=site, reason="other_site") - reports_before == 2
    assert counted(chips, site=site, reason="other_site") - chips_before == 2 * 144


@pytest.mark.parametrize("epoch", [7, ["a"], "x" * 65])
def test_an_epoch_that_is_not_a_short_string_is_400(alpha, epoch):
    client, server = alpha
    body = report(server.serial, None, 1, 1)
    oem(body)[ReportKey.EPOCH] = epoch
    response = post(client, [body])
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == f"reports[0].{EPOCH}"
    assert not ServerSample.objects.exists()


def test_ingest_queries_stay_fixed_with_epochs_and_duplicates(fleet, alpha):
    client, server = alpha
    site = fleet.sites["alpha"]
    servers = [server]
    for i in range(2, 11):
        servers.append(make_server(f"{site.code}-E{i}", rack=make_rack(site, f"{site.code}-E{i}")))
    post(client, [report(server.serial, "warm", 1, 0)])  # egress decision, agent seen, freshness

    def count(n: int, second: int) -> int:
        # Half new, half duplicates of what another epoch stored, in two epochs each.
        stored = [report(s.serial, "first", second, second) for s in servers[:n]]
        post(client, stored)
        batch = [
            report(s.serial, epoch, second, second + offset)
            for s in servers[:n]
            for epoch, offset in (("second", 0), ("third", 1))
        ]
        with CaptureQueriesContext(connection) as queries:
            answer = post(client, batch).json()
        assert (answer["accepted"], answer["replayed"]) == (n, n)
        return len(queries)

    assert count(2, 10) == count(10, 20)


def test_watermarks_not_heard_for_a_week_are_forgotten(alpha):
    client, server = alpha
    post(client, [report(server.serial, "gone", 1, 1), report(server.serial, "live", 1, 2)])
    TelemetrySource.objects.filter(epoch="gone").update(
        updated_at=timezone.now() - dt.timedelta(days=8)
    )
    assert ingest.forget_epochs() == 1
    assert watermarks(server.serial) == {"live": 1}
    # A late report of the forgotten epoch is still no duplicate sample.
    assert post(client, [report(server.serial, "gone", 1, 1)]).json()["accepted"] == 0
    assert ServerSample.objects.count() == 2


# --- freshness ----------------------------------------------------------------------------------


def test_a_server_silent_while_its_agent_reports_is_a_fault_cleared_when_it_is_back(
    fleet, alpha, settings
):
    settings.TELEMETRY_STALE_AFTER_SECONDS = 60
    client, quiet = alpha
    site = fleet.sites["alpha"]
    talking = make_server(f"{site.code}-SRV9", rack=make_rack(site, f"{site.code}-R09"))
    now = dt.datetime.now(dt.UTC)
    cache.delete(f"telemetry-freshness:{site.pk}")
    reply = post(client, [server_report(quiet.serial, 1), server_report(talking.serial, 1)])
    assert reply.status_code == 200
    assert not Fault.objects.exists()

    # The quiet server's BMC stops answering the agent; the other keeps reporting.
    ServerTelemetry.objects.filter(ultraserver=quiet).update(
        received_at=now - dt.timedelta(seconds=90), ts=now - dt.timedelta(seconds=90)
    )
    cache.delete(f"telemetry-freshness:{site.pk}")
    assert post(client, [server_report(talking.serial, 2)]).status_code == 200
    fault = Fault.objects.get()
    assert (fault.rule, fault.ultraserver_id, fault.cleared_at) == (
        FaultRule.TELEMETRY_STALE,
        quiet.pk,
        None,
    )
    assert "no telemetry for 90 s (limit 60 s)" in fault.detail
    quiet.refresh_from_db()
    assert not quiet.in_maintenance  # not heard is not broken: no maintain workflow
    assert Event.objects.filter(kind="fault.opened", data__rule=FaultRule.TELEMETRY_STALE).exists()

    # Looking again opens no second one (one open fault per server and rule).
    assert ingest.check_freshness(site.pk) == (0, 0)
    assert Fault.objects.count() == 1

    # Its samples come back: the fault clears at the next check.
    assert post(client, [server_report(quiet.serial, 2)]).status_code == 200
    cache.delete(f"telemetry-freshness:{site.pk}")
    assert post(client, [server_report(talking.serial, 3)]).status_code == 200
    fault.refresh_from_db()
    assert fault.cleared_at is not None and fault.cleared_reason == "telemetry arrives again"


def test_a_server_that_never_reported_or_is_decommissioned_raises_nothing(fleet, alpha, settings):
    settings.TELEMETRY_STALE_AFTER_SECONDS = 60
    client, server = alpha
    site = fleet.sites["alpha"]
    make_server(f"{site.code}-NEW", rack=make_rack(site, f"{site.code}-R10"))  # never reported
    post(client, [server_report(server.serial, 1)])
    ServerTelemetry.objects.update(received_at=timezone.now() - dt.timedelta(hours=1))
    type(server).objects.filter(pk=server.pk).update(lifecycle_state="decommissioned")
    assert ingest.check_freshness(site.pk) == (0, 0)
    assert not Fault.objects.exists()


def test_a_backlog_delivered_in_several_batches_opens_no_stale_fault(fleet, alpha, settings):
    """After an outage the outbox delivers its backlog oldest first, a fraction of an interval
    per batch, and the freshness check runs after the first: the servers not yet in it are
    behind, not silent (their silence is no longer than the newest sample delivered)."""
    settings.TELEMETRY_STALE_AFTER_SECONDS = 60
    client, first = alpha
    site = fleet.sites["alpha"]
    servers = [first] + [
        make_server(f"{site.code}-B{i}", rack=make_rack(site, f"{site.code}-B{i}"))
        for i in range(2, 5)
    ]
    outage = timezone.now() - dt.timedelta(minutes=10)
    before = [report(s.serial, "e", 1, 0) for s in servers]
    for body in before:
        body["Timestamp"] = outage.isoformat()
    assert post(client, before).json()["accepted"] == 4
    ServerTelemetry.objects.update(received_at=outage)
    # Ten minutes of backlog, at 10 s, two reports per batch: the check runs after each.
    sequence = 2
    for step in range(1, 61):
        ts = outage + dt.timedelta(seconds=10 * step)
        for pair in (servers[:2], servers[2:]):
            batch = [report(s.serial, "e", sequence + k, 0) for k, s in enumerate(pair)]
            for body in batch:
                body["Timestamp"] = ts.isoformat()
            sequence += 2
            cache.delete(f"telemetry-freshness:{site.pk}")
            assert post(client, batch).status_code == 200
            assert not Fault.objects.filter(rule=FaultRule.TELEMETRY_STALE).exists(), step
    assert ServerSample.objects.count() == 4 + 4 * 60


def test_a_server_behind_the_delivered_samples_is_still_stale(fleet, alpha, settings):
    """The backlog rule does not hide a server that really went silent during it."""
    settings.TELEMETRY_STALE_AFTER_SECONDS = 60
    client, quiet = alpha
    site = fleet.sites["alpha"]
    talking = make_server(f"{site.code}-T2", rack=make_rack(site, f"{site.code}-T2"))
    outage = timezone.now() - dt.timedelta(minutes=10)
    stale = report(quiet.serial, "e", 1, 0)
    stale["Timestamp"] = outage.isoformat()
    post(client, [stale])
    ServerTelemetry.objects.update(received_at=outage)
    late = report(talking.serial, "e", 2, 0)
    late["Timestamp"] = (outage + dt.timedelta(seconds=300)).isoformat()
    cache.delete(f"telemetry-freshness:{site.pk}")
    assert post(client, [late]).status_code == 200
    fault = Fault.objects.get(rule=FaultRule.TELEMETRY_STALE)
    assert fault.ultraserver_id == quiet.pk


@pytest.mark.parametrize("where", ["source", "epoch"])
def test_a_nul_in_the_source_or_epoch_is_a_400_naming_it_and_counted(alpha, where):
    client, server = alpha
    site = server.rack.site.code
    reports = "factory_telemetry_ingest_rejected_reports_total"
    before = counted(reports, site=site, reason="invalid")
    body = report(server.serial, "e", 1, 1)
    key = ReportKey.SOURCE if where == "source" else ReportKey.EPOCH
    oem(body)[key] = oem(body)[key] + "\x00x"
    response = post(client, [body])
    assert response.status_code == 400, response.content
    error = response.json()["errors"][0]
    assert (error["field"], error["code"]) == (f"reports[0].Oem.{OEM}.{key}", "invalid")
    assert "NUL" in error["message"]
    assert counted(reports, site=site, reason="invalid") - before == 1
    assert not ServerSample.objects.exists()


def test_samples_are_inserted_in_server_and_time_order(fleet, alpha):
    """Two HA agents' batches take the unique index's locks in one order (no deadlock): the
    rows go in by (server, Timestamp), whatever the batch's order."""
    client, first = alpha
    site = fleet.sites["alpha"]
    second = make_server(f"{site.code}-O2", rack=make_rack(site, f"{site.code}-O2"))
    batch = [
        report(second.serial, "e", 1, 5),
        report(first.serial, "e", 1, 9),
        report(second.serial, "e", 2, 1),
        report(first.serial, "e", 2, 3),
    ]
    assert post(client, batch).json()["accepted"] == 4
    inserted = list(ServerSample.objects.order_by("id").values_list("ultraserver_id", "ts"))
    assert inserted == sorted(inserted)


def test_count_ingest_takes_the_site_only():
    from factory.telemetry import metrics

    with pytest.raises(TypeError):
        metrics.count_ingest("ALP1", 1, 2)  # type: ignore[call-arg]


def test_the_unique_sample_rule_is_a_constraint_built_from_a_concurrent_index(db):
    """Migration 0005: the unique index was built without locking the table (non-atomic,
    CONCURRENTLY), then became the constraint; the old (server, ts) index is gone."""
    import importlib

    migration = importlib.import_module("factory.telemetry.migrations.0005_unique_samples")
    assert migration.Migration.atomic is False
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's catalog")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.contype, i.indisvalid FROM pg_constraint c "
            "JOIN pg_index i ON i.indexrelid = c.conindid WHERE c.conname = %s",
            ["sample_unique_server_ts"],
        )
        assert cursor.fetchall() == [("u", True)]
        cursor.execute("SELECT 1 FROM pg_class WHERE relname = 'sample_server_ts'")
        assert cursor.fetchall() == []
