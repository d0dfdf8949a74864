"""Health rules → faults → maintain workflows; roll-ups, retention and the read API."""

import datetime as dt
import subprocess

import pytest
from django.test import override_settings
from django.utils import timezone

from factory import wire
from factory.inventory.models import Chip, UltraServer
from factory.telemetry import services
from factory.telemetry.models import Fault, ServerRollup, ServerSample
from factory.wire import EventKind, FaultRule, HealthCode, Metric
from provisioning import jobs
from provisioning.models import Workflow, WorkflowTarget
from tests.support.api import gateway
from tests.support.telemetry import agent_client, feed, pdu_report, post, server_report
from tests.support.workflows import put_in_service


@pytest.fixture
def site(fleet):
    server = put_in_service(fleet.servers["alpha"])
    client, _ = agent_client(fleet.sites["alpha"])
    return client, server


def failed(index: int) -> list[int]:
    health = [int(HealthCode.OK)] * 144
    health[index] = int(HealthCode.FAILED)
    return health


def events(client, *batch: wire.Event):
    body = wire.EventBatch(events=list(batch))
    return client.post(gateway(wire.EVENTS_PATH), body, format="json")


def test_a_chip_going_down_raises_one_fault_flags_the_server_and_opens_maintenance(
    site, django_capture_on_commit_callbacks
):
    client, server = site
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, [server_report(server.serial, 1)]).status_code == 200
        reply = post(client, [server_report(server.serial, 2, health=failed(17))])
    assert reply.json()["faults_opened"] == 1
    fault = Fault.objects.get()
    assert (fault.rule, fault.chip_index) == (FaultRule.CHIP_DOWN, 17)
    assert fault.ultraserver_id == server.pk
    server.refresh_from_db()
    assert server.in_maintenance and "chip 17" in server.fault_reason
    assert Chip.objects.get(ultraserver=server, index=17).health == "failed"
    held = WorkflowTarget.objects.get(ultraserver=server, active=True)
    assert held.workflow.kind == "maintain"
    # The rule keeps seeing it: still one fault, still one workflow.
    with django_capture_on_commit_callbacks(execute=True):
        again = post(client, [server_report(server.serial, 3, health=failed(17))])
        worse = post(
            client, [server_report(server.serial, 4, health=failed(17), ecc_uncorrected=[1] * 144)]
        )
    assert again.json()["faults_opened"] == 0
    assert worse.json()["faults_opened"] == 144  # one per chip with a new uncorrectable error
    assert Workflow.objects.filter(kind="maintain").count() == 1


def test_link_down_past_the_limit_and_throttling_raise_faults(site):
    client, server = site
    post(client, [server_report(server.serial, 1)])
    link = [0.0] * 144
    link[3] = 9.0
    throttle = [0.0] * 144
    throttle[5] = 30.0
    post(client, [server_report(server.serial, 2, link_down_s=link, throttle_s=throttle)])
    assert set(Fault.objects.values_list("rule", "chip_index")) == {
        (FaultRule.LINK_DOWN, 3),
        (FaultRule.THERMAL_THROTTLE, 5),
    }


def test_a_link_outage_split_across_samples_is_caught(site):
    from factory.telemetry import codec
    from factory.telemetry.models import ServerTelemetry

    client, server = site

    def link(seconds):
        values = [0.0] * 144
        values[5] = seconds
        return values

    replies = [
        post(client, [server_report(server.serial, i + 1, link_down_s=link(s))]).json()
        for i, s in enumerate((0.0, 5.0, 10.0, 14.0))  # 5 s + 5 s + 4 s of one outage
    ]
    assert [r["faults_opened"] for r in replies] == [0, 0, 1, 0]
    fault = Fault.objects.get()
    assert (fault.rule, fault.chip_index) == (FaultRule.LINK_DOWN, 5)
    latest = ServerTelemetry.objects.get(ultraserver=server)
    assert codec.unpack("link_outage_s", latest.link_outage_s)[5] == 14.0


def test_feed_loss_raises_a_fault_that_clears_when_the_feed_returns(site, fleet):
    client, _ = site
    source = wire.pdu_source(fleet.racks["alpha"].name)
    post(client, [pdu_report(source, 1, {"A1": feed(0.0, up=False)})])
    fault = Fault.objects.get()
    assert fault.rule == FaultRule.FEED_LOSS and fault.ultraserver is None
    post(client, [pdu_report(source, 2, {"A1": feed(60000.0)})])
    fault.refresh_from_db()
    assert fault.cleared_at is not None


def test_events_raise_faults_at_once(site):
    client, server = site
    response = events(
        client,
        wire.Event(
            source=server.serial,
            kind=EventKind.CHIP_FAILURE,
            chip=3,
            timestamp=timezone.now().isoformat(),
        ),
        wire.Event(source=server.serial, kind=EventKind.LINK_FLAP, timestamp="2026-11-28T10:00Z"),
    )
    assert response.status_code == 200, response.content
    assert list(Fault.objects.values_list("rule", "chip_index")) == [(FaultRule.CHIP_DOWN, 3)]


def test_an_event_naming_an_impossible_chip_is_400(site):
    client, server = site
    response = events(
        client,
        wire.Event(
            source=server.serial,
            kind=EventKind.CHIP_FAILURE,
            chip=40000,
            timestamp="2026-11-28T10:00Z",
        ),
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"].startswith("events")
    beyond = events(
        client,
        wire.Event(
            source=server.serial,
            kind=EventKind.CHIP_FAILURE,
            chip=144,
            timestamp="2026-11-28T10:00Z",
        ),
    )
    assert beyond.status_code == 400
    assert beyond.json()["errors"][0]["field"] == "events[0].chip"
    nobody = events(
        client,
        wire.Event(
            source="NOPE-1",
            kind=EventKind.CHIP_FAILURE,
            chip=1,
            timestamp="2026-11-28T10:00Z",
        ),
    )
    assert nobody.status_code == 400
    assert nobody.json()["errors"][0]["field"] == "events[0].source"
    assert not Fault.objects.exists()


def test_events_for_another_sites_server_are_refused(site, fleet):
    client, _ = site
    response = events(
        client,
        wire.Event(
            source=fleet.servers["beta"].serial,
            kind=EventKind.CHIP_FAILURE,
            chip=1,
            timestamp="2026-11-28T10:00Z",
        ),
    )
    assert response.status_code == 403
    assert not Fault.objects.exists()


def test_faults_are_listed_per_tenant_and_cleared_by_return_to_service(site, fleet):
    client, server = site
    post(client, [server_report(server.serial, 1, health=failed(2))])
    mine = fleet.client("alpha_viewer").get("/api/v1/faults/?open=true").json()
    assert [f["chip_index"] for f in mine["results"]] == [2]
    assert fleet.client("beta_viewer").get("/api/v1/faults/").json()["results"] == []
    assert fleet.client("alpha_viewer").get("/api/v1/faults/?open=maybe").status_code == 400
    from factory.telemetry.faults import clear_server

    clear_server(server.pk, "repaired")
    assert fleet.client("alpha_viewer").get("/api/v1/faults/?open=true").json()["results"] == []


def test_reported_faults_are_recorded_too(site, fleet):
    _, server = site
    response = fleet.client("alpha_operator").post(
        "/api/v1/faults/", {"ultraserver": server.pk, "reason": "smoke seen"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["fault"] == Fault.objects.get(rule=FaultRule.REPORTED).pk


def test_rollups_and_retention_and_the_series_api(site, fleet):
    client, server = site
    now = timezone.now().replace(second=30, microsecond=0) - dt.timedelta(minutes=3)
    for i in range(6):
        ts = now + dt.timedelta(seconds=10 * i)
        post(client, [server_report(server.serial, i + 1, ts, power_w=[500.0 + i] * 144)])
    assert services.roll_up().minutes >= 1
    assert services.roll_up().minutes >= 1  # idempotent: recomputed, not added
    minutes = ServerRollup.objects.filter(resolution="1m")
    assert sum(m.samples for m in minutes) == 6
    viewer = fleet.client("alpha_viewer")
    url = f"/api/v1/ultraservers/{server.pk}/telemetry/"
    raw = viewer.get(url, {"resolution": "raw"}).json()
    assert len(raw["points"]) == 6
    assert raw["points"][0]["chips"][Metric.POWER_W][0] == 500.0
    rolled = viewer.get(url, {"resolution": "1m"}).json()
    assert sum(p["samples"] for p in rolled["points"]) == 6
    assert viewer.get(url, {"resolution": "5m"}).status_code == 400
    bad_range = viewer.get(url, {"start": "2026-11-28T10:00Z", "end": "2026-11-28T09:00Z"})
    assert bad_range.status_code == 400
    assert fleet.client("beta_viewer").get(url).status_code == 404
    health = viewer.get(f"/api/v1/ultraservers/{server.pk}/chip-health/").json()
    assert len(health["chips"]) == 144 and health["chips"][0][Metric.TEMP_C] == 65.0

    with override_settings(TELEMETRY_RAW_RETENTION_HOURS=24):
        removed = jobs.telemetry_retention()
        assert ServerSample.objects.count() == 6  # not yet past the retention
        removed = services.expire(now=timezone.now() + dt.timedelta(days=3))
    # Partitioned (PostgreSQL) the day is dropped whole; otherwise its rows are deleted.
    assert removed.get("raw_partitions_dropped") or removed["raw"] == 6
    assert not ServerSample.objects.exists()
    assert ServerRollup.objects.exists()  # roll-ups outlive raw samples


def test_agent_silence_is_a_fault_and_hearing_again_clears_it(site, fleet):
    from factory.agents.models import SiteAgent

    SiteAgent.objects.update(last_seen_at=timezone.now() - dt.timedelta(hours=1))
    result = jobs.detect_stale_agents()
    assert result["faults_opened"] == 1
    assert Fault.objects.get().rule == FaultRule.AGENT_SILENT
    client, server = site
    post(client, [server_report(server.serial, 1)])  # heard from again
    jobs.detect_stale_agents()
    assert Fault.objects.get().cleared_at is not None
    assert UltraServer.objects.get(pk=server.pk).unreachable_since is None


def test_metrics_endpoint_passes_promtool(site, fleet):
    client, server = site
    post(client, [server_report(server.serial, 1, health=failed(4))])
    response = fleet.client("provider_admin").get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'factory_chips{health="failed",site="ALP1"} 1.0' in text
    assert "# TYPE factory_workflows gauge" in text
    assert "factory_telemetry_ingest_chip_samples_per_second" in text
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert fleet.client("alpha_admin").get("/metrics").status_code == 403


def test_admin_lists_faults_and_latest_telemetry(site, fleet, client):
    agent_client_, server = site
    post(agent_client_, [server_report(server.serial, 1, health=failed(1))])
    padmin = fleet.people["provider_admin"]
    padmin.is_superuser = True  # as the demo fleet's admins are (admin permissions are Django's)
    padmin.save()
    client.force_login(padmin)
    for model in ("fault", "servertelemetry", "devicereading", "telemetrysource"):
        page = client.get(f"/admin/telemetry/{model}/")
        assert page.status_code == 200, model
    assert b"chip 1 reports Critical health" in client.get("/admin/telemetry/fault/").content
