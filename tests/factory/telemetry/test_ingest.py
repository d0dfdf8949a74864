"""The agent gateway's telemetry ingest: storage, scoping, malformed batches, replays, egress."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from factory import wire
from factory.inventory.models import UltraServer
from factory.telemetry import codec, egress
from factory.telemetry.models import ServerSample, ServerTelemetry, TelemetrySource
from factory.wire import OEM, Category, Metric, ReportKey
from tests.support.api import gateway
from tests.support.fleet import make_rack, make_server
from tests.support.sovereignty import active_rule
from tests.support.telemetry import agent_client, feed, oem, pdu_report, post, server_report

SOURCE, CHIPS = f"Oem.{OEM}.{ReportKey.SOURCE}", f"Oem.{OEM}.{ReportKey.CHIPS}"


@pytest.fixture(autouse=True)
def _fresh_egress_decisions():
    egress.forget()
    yield
    egress.forget()


@pytest.fixture
def alpha(fleet):
    client, _ = agent_client(fleet.sites["alpha"])
    return client, fleet.servers["alpha"]


def test_a_batch_is_stored_raw_and_as_latest_state(alpha):
    client, server = alpha
    response = post(client, [server_report(server.serial, 1, power_w=[700.0] * 144)])
    assert response.status_code == 200, response.content
    assert response.json() == {
        "accepted": 1,
        "replayed": 0,
        "chip_samples": 144,
        "dropped_metrics": [],
        "faults_opened": 0,
    }
    sample = ServerSample.objects.get()
    assert sample.chips == 144
    assert codec.unpack(Metric.POWER_W, sample.power_w) == [700.0] * 144
    assert sample.power_total_w == pytest.approx(144 * 700)
    latest = ServerTelemetry.objects.get(ultraserver=server)
    assert codec.unpack(Metric.HEALTH, latest.health) == [0] * 144


def test_a_replayed_report_is_acknowledged_and_not_stored_twice(alpha):
    client, server = alpha
    first = server_report(server.serial, 1)
    assert post(client, [first]).json()["accepted"] == 1
    again = post(client, [first, server_report(server.serial, 2)]).json()
    assert (again["accepted"], again["replayed"]) == (1, 1)
    assert post(client, [first]).json()["replayed"] == 1
    assert ServerSample.objects.count() == 2
    assert TelemetrySource.objects.get(source=server.serial).last_sequence == 2


def test_another_sites_server_is_403_and_nothing_is_stored(fleet, alpha):
    client, server = alpha
    foreign = fleet.servers["beta"]
    response = post(client, [server_report(server.serial, 1), server_report(foreign.serial, 1)])
    assert response.status_code == 403
    assert response.json()["code"] == "other_site"
    assert not ServerSample.objects.exists()
    assert not TelemetrySource.objects.exists()


@pytest.mark.parametrize(
    ("mutate", "field", "code"),
    [
        (lambda r: r.update(Timestamp="yesterday"), "reports[1].Timestamp", "invalid"),
        (lambda r: r.update(Timestamp="2026-11-28T10:00:00"), "reports[1].Timestamp", "invalid"),
        (lambda r: r.update(ReportSequence="x"), "reports[1].ReportSequence", "invalid"),
        (lambda r: r.update(ReportSequence=0), "reports[1].ReportSequence", "invalid"),
        (lambda r: r.update(ReportSequence=str(2**64)), "reports[1].ReportSequence", "invalid"),
        (
            lambda r: oem(r).update({ReportKey.SOURCE: "X" * 81}),
            f"reports[1].{SOURCE}",
            "required",
        ),
        (
            lambda r: oem(r)[ReportKey.CHIPS].update({Metric.HEALTH: [300] * 144}),
            f"reports[1].{CHIPS}.{Metric.HEALTH}",
            "invalid",
        ),
        (
            lambda r: oem(r)[ReportKey.CHIPS].update({Metric.POWER_W: [1.0] * 10}),
            f"reports[1].{CHIPS}.{Metric.POWER_W}",
            "wrong_length",
        ),
        (
            lambda r: oem(r)[ReportKey.CHIPS].update({Metric.ECC_UNCORRECTED: [0.5] * 144}),
            f"reports[1].{CHIPS}.{Metric.ECC_UNCORRECTED}",
            "invalid",
        ),
        (
            lambda r: oem(r)[ReportKey.CHIPS].update({Metric.POWER_W: ["hot"] * 144}),
            f"reports[1].{CHIPS}.{Metric.POWER_W}",
            "invalid",
        ),
        (
            lambda r: oem(r)[ReportKey.CHIPS].update(mood=[1] * 144),
            f"reports[1].{CHIPS}.mood",
            "unknown_metric",
        ),
        (
            lambda r: oem(r).update({ReportKey.SOURCE: "NOPE-1"}),
            f"reports[1].{SOURCE}",
            "unknown_source",
        ),
        (lambda r: r["Oem"].pop(OEM), f"reports[1].{SOURCE}", "required"),
    ],
)
def test_a_malformed_batch_is_400_naming_the_part_and_nothing_is_stored(alpha, mutate, field, code):
    client, server = alpha
    bad = server_report(server.serial, 2)
    mutate(bad)
    response = post(client, [server_report(server.serial, 1), bad])
    assert response.status_code == 400, response.content
    error = response.json()["errors"][0]
    assert (error["field"], error["code"]) == (field, code)
    assert not ServerSample.objects.exists()
    assert not ServerTelemetry.objects.exists()
    assert not TelemetrySource.objects.exists()


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"reports": []}', b'{"reports": "x"}', b'{"reports": [1]}']
)
def test_bodies_that_are_not_batches_are_400(alpha, body):
    client, _ = alpha
    response = post(client, body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"].startswith("reports")


def test_only_agents_may_send_telemetry(fleet):
    response = fleet.client("provider_admin").post(
        gateway(wire.TELEMETRY_PATH), data=b"{}", content_type="application/json"
    )
    assert response.status_code in (401, 403)
    assert not ServerSample.objects.exists()


def test_metrics_the_egress_rule_keeps_at_the_site_are_not_stored(fleet, alpha):
    client, server = alpha
    allowed = {Category.POWER, Category.THERMAL}
    active_rule(fleet, "telemetry_egress", categories=sorted(allowed), destinations=[])
    answer = post(client, [server_report(server.serial, 1)]).json()
    kept_home = sorted(m.name for m in wire.CHIP_METRICS if m.category not in allowed)
    assert Metric.UTILIZATION in kept_home and Metric.HEALTH in kept_home
    assert answer["dropped_metrics"] == kept_home
    sample = ServerSample.objects.get()
    assert sample.utilization is None and sample.health is None
    assert codec.unpack(Metric.TEMP_C, sample.temp_c) == [65.0] * 144


def test_the_agent_is_told_what_may_leave(fleet, alpha):
    client, _ = alpha
    config = client.get(gateway(wire.CONFIG_PATH)).json()
    assert config["telemetry_categories"] == sorted(Category)
    assert set(config["metrics"]) == set(wire.METRIC_NAMES)


def test_ingest_queries_do_not_grow_with_the_batch(fleet, alpha):
    client, server = alpha
    site = fleet.sites["alpha"]
    servers = [server]
    for i in range(2, 11):
        servers.append(make_server(f"{site.code}-T{i}", rack=make_rack(site, f"{site.code}-T{i}")))
    post(client, [server_report(server.serial, 1)])  # warm: egress decision, agent seen

    def count(n, sequence):
        reports = [server_report(s.serial, sequence) for s in servers[:n]]
        with CaptureQueriesContext(connection) as queries:
            assert post(client, reports).status_code == 200
        return len(queries)

    assert count(2, 2) == count(10, 3)


def test_pdu_readings_are_kept_as_the_racks_power(fleet, alpha):
    client, _ = alpha
    rack = fleet.racks["alpha"]
    reply = post(
        client,
        [pdu_report(wire.pdu_source(rack.name), 1, {"A1": feed(61000.0)})],
    )
    assert reply.status_code == 200, reply.content
    power = fleet.client("alpha_viewer").get(f"/api/v1/sites/{rack.site_id}/power/").json()
    line = next(r for r in power["racks"] if r["rack"] == rack.pk)
    assert line["drawn_w"] == 61000.0
    assert power["drawn_w"] == 61000.0
    assert line["budget_w"] > 0 and line["committed_w"] > 0
    # and nobody else's site
    other = fleet.client("beta_viewer").get(f"/api/v1/sites/{rack.site_id}/power/")
    assert other.status_code == 404


def test_servers_without_reports_stay_unknown(alpha):
    _, server = alpha
    assert not UltraServer.objects.get(pk=server.pk).in_maintenance


def test_an_older_report_does_not_replace_the_latest_state(alpha):
    import datetime as dt

    client, server = alpha
    now = dt.datetime.now(dt.UTC)
    post(client, [server_report(server.serial, 1, now, power_w=[900.0] * 144)])
    late = server_report(server.serial, 2, now - dt.timedelta(minutes=5), power_w=[100.0] * 144)
    assert post(client, [late]).json()["accepted"] == 1  # stored as history
    latest = ServerTelemetry.objects.get(ultraserver=server)
    assert codec.unpack(Metric.POWER_W, latest.power_w)[0] == 900.0
    assert ServerSample.objects.count() == 2
