"""An agent that loses its outbox, and two agents for one site, as real processes (simulated
hardware, the site agent, gunicorn in multiprocess metrics mode): no report is taken for a
replay and dropped, no sample is stored twice, and the counters say what happened."""

from __future__ import annotations

import datetime as dt
import json
import time
from itertools import pairwise
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db.models import Count, Sum
from prometheus_client.parser import text_string_to_metric_families

from factory.agents import services as agents
from factory.telemetry.layout import site_layout
from factory.telemetry.models import ServerSample, TelemetrySource
from tests.support.fleet import make_rack, make_server
from tests.support.processes import app_env, gunicorn, site_agent, site_simulator, wait_for
from tests.support.telemetry import CTX

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
INTERVAL = 1.0  # the agents' --interval (tests.support.processes.site_agent)
CHIPS = 144


def counters(url: str, auth: dict, site: str) -> dict[tuple[str, str], float]:
    """The site's ingest counters as the control plane exports them: (family, outcome or
    reason) → value."""
    text = requests.get(f"{url}/metrics", headers=auth, timeout=30).text
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("factory_telemetry_ingest_") and (
                sample.labels.get("site") == site
            ):
                kind = sample.labels.get("outcome") or sample.labels.get("reason") or ""
                found[(sample.name, kind)] = found.get((sample.name, kind), 0.0) + sample.value
    return found


def samples_after(serials: list[str], since: dt.datetime) -> dict[str, int]:
    return dict(
        ServerSample.objects.filter(ultraserver__serial__in=serials, ts__gt=since)
        .values_list("ultraserver__serial")
        .annotate(n=Count("id"))
    )


def remove_outbox(path: Path) -> None:
    """What a replaced disk or a reinstalled host leaves: nothing of the outbox."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def assert_no_sample_twice(serials: list[str]) -> None:
    for serial in serials:
        rows = ServerSample.objects.filter(ultraserver__serial=serial)
        assert rows.values("ts").distinct().count() == rows.count(), serial


@pytest.fixture
def site_world(fleet, tmp_path):
    """A site of three UltraServers, its simulated hardware and a control plane."""
    site = fleet.sites["alpha"]
    servers = [fleet.servers["alpha"]] + [
        make_server(f"ALP1-SRV{i}", rack=make_rack(site, f"ALP1-R0{i}")) for i in (2, 3)
    ]
    layout = tmp_path / "layout.json"
    layout.write_text(json.dumps(site_layout(site)))
    devices = tmp_path / "devices.json"
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = app_env(
        settings.REDIS_URL,
        TELEMETRY_INTERVAL_SECONDS=str(INTERVAL),
        PROMETHEUS_MULTIPROC_DIR=str(shared),
    )
    provider = fleet.client("provider_admin")
    auth = {"Authorization": provider._credentials["HTTP_AUTHORIZATION"]}
    simulator = site_simulator(layout, devices, tmp_path / "simulator.log")
    try:
        with gunicorn(env, tmp_path / "web.log", workers=2, threads=4) as url:
            wait_for(devices.exists, 15, "simulator device list")
            yield site, [s.serial for s in servers], devices, url, auth
    finally:
        simulator.stop()


def test_an_agent_that_lost_its_outbox_is_heard_again_at_once(site_world, tmp_path):
    site, serials, devices, url, auth = site_world
    _, token = agents.issue_agent(site, "e2e-agent", CTX)
    outbox = tmp_path / "outbox.sqlite3"
    agent = site_agent(url, devices, token, outbox, tmp_path / "agent.log")
    try:
        wait_for(
            lambda: len(samples_after(serials, dt.datetime.min.replace(tzinfo=dt.UTC))) == 3,
            30,
            "samples from every server",
        )
        time.sleep(4 * INTERVAL)  # the watermark of the first run grows well past 1
        agent.stop()
        stopped = dt.datetime.now(dt.UTC)
        first_run = dict(
            TelemetrySource.objects.filter(source__in=serials).values_list("source", "epoch")
        )
        before = counters(url, auth, site.code)
        assert (
            min(
                TelemetrySource.objects.filter(source__in=serials).values_list(
                    "last_sequence", flat=True
                )
            )
            >= 4
        )

        # The disk is replaced: the same credential, no outbox, numbering from 1 again.
        remove_outbox(outbox)
        time.sleep(1.0)  # the simulator's next tick: nothing the first run stored is polled again
        agent = site_agent(url, devices, token, outbox, tmp_path / "agent2.log")
        started = time.monotonic()
        wait_for(lambda: len(samples_after(serials, stopped)) == 3, 15, "samples after restart")
        # One report interval after it polls (start-up of the process aside): every server.
        assert time.monotonic() - started < 8 * INTERVAL
        time.sleep(4 * INTERVAL)
        agent.stop()
        agent = None

        streams = list(
            TelemetrySource.objects.filter(source__in=serials).values_list(
                "source", "epoch", "last_sequence"
            )
        )
        second_run = {s: (e, n) for s, e, n in streams if e != first_run[s]}
        assert set(second_run) == set(serials), streams  # a new epoch per server, the old kept
        assert len(streams) == 2 * len(serials)
        after = samples_after(serials, stopped)
        # Every report of the second run was stored: none lost, none taken for a replay.
        assert {s: after[s] for s in serials} == {s: n for s, (_, n) in second_run.items()}
        assert_no_sample_twice(serials)
        now = counters(url, auth, site.code)

        def grew(name: str, kind: str) -> float:
            return now.get((name, kind), 0.0) - before.get((name, kind), 0.0)

        chips = "factory_telemetry_ingest_chip_samples_total"
        reports = "factory_telemetry_ingest_reports_total"
        assert grew(chips, "stored") == CHIPS * sum(after.values())
        assert grew(chips, "replayed") == 0 and grew(chips, "duplicate") == 0
        assert grew(reports, "stored") >= sum(after.values())  # and the PDUs' and the CDU's
        assert now[(chips, "stored")] == CHIPS * ServerSample.objects.count()
    finally:
        if agent is not None:
            agent.stop()


def test_two_agents_for_one_site_lose_nothing_and_store_nothing_twice(site_world, tmp_path):
    site, serials, devices, url, auth = site_world
    _, first_token = agents.issue_agent(site, "e2e-agent-a", CTX)
    _, second_token = agents.issue_agent(site, "e2e-agent-b", CTX)
    pair = [
        site_agent(url, devices, token, tmp_path / f"{name}.sqlite3", tmp_path / f"{name}.log")
        for name, token in (("a", first_token), ("b", second_token))
    ]
    try:
        epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
        wait_for(lambda: len(samples_after(serials, epoch)) == 3, 30, "samples from every server")
        # Both agents have numbered reports for every server.
        wait_for(
            lambda: (
                TelemetrySource.objects.filter(source__in=serials, last_sequence__gte=5)
                .values("epoch")
                .distinct()
                .count()
                == 2
            ),
            30,
            "both agents' epochs",
        )
        # One agent goes (its host is reinstalled); the other carries on alone.
        pair[0].stop()
        gone = dt.datetime.now(dt.UTC)
        wait_for(lambda: len(samples_after(serials, gone)) == 3, 10, "samples from the other")
        time.sleep(2 * INTERVAL)
        for agent in pair:
            agent.stop()

        numbered = TelemetrySource.objects.filter(source__in=serials).aggregate(
            n=Sum("last_sequence")
        )["n"]
        assert_no_sample_twice(serials)
        stored = ServerSample.objects.filter(ultraserver__serial__in=serials).count()
        found = counters(url, auth, site.code)
        chips = "factory_telemetry_ingest_chip_samples_total"
        # Every report either agent numbered was stored or was a sample the other had stored:
        # none was taken for a replay, none stored twice.
        assert found[(chips, "stored")] == CHIPS * stored
        assert found.get((chips, "replayed"), 0.0) == 0
        assert found[(chips, "stored")] + found.get((chips, "duplicate"), 0.0) == CHIPS * numbered
        # Each server's series has no hole while either agent ran.
        for serial in serials:
            stamps = sorted(
                ServerSample.objects.filter(ultraserver__serial=serial).values_list("ts", flat=True)
            )
            gaps = [(b - a).total_seconds() for a, b in pairwise(stamps)]
            assert max(gaps) < 3 * INTERVAL, (serial, gaps)
    finally:
        for agent in pair:
            agent.stop()
