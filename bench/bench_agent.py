"""The site agent at a 36-UltraServer Trn3 site (5,184 chips; 36 rack PDUs and a CDU), polling
every 10 s as in production, on one core: CPU seconds the agent process spends per report
interval, as a fraction of the interval (the issue's target: at most 0.1).

Everything is real and in its own process: the simulated site (``python -m factory.simulator``,
HTTPS with a site CA, as BMCs are), the control plane (gunicorn on the benchmark database: the
agent's batches go through the production ingest path, stored and checked), and the agent
(``python -m factory.siteagent``) pinned to core 0 with ``taskset``, the others to core 1.
Only the agent's own CPU time is counted (``/proc/<pid>/stat``: user + system, all its
threads), over whole intervals after a warm-up (log-in, sessions, the first config).
Written to ``bench/results/bench_agent.json``.

Baseline, same run: the bare cost of polling the same devices once per interval from one
``requests`` session over the same HTTPS (GET each device's report, parse its JSON), nothing
else: what any agent must spend. The target applies to the value; the ratio to the bare
poller is reported beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import BENCH_DB, bench_racks, bench_site, bench_trn3_servers, write_result
from factory import wire

SERVERS, CHIPS = 36, 144
INTERVAL = 10.0
INTERVALS = int(os.environ.get("BENCH_AGENT_INTERVALS", "6"))
WARMUP_S = float(os.environ.get("BENCH_AGENT_WARMUP_SECONDS", "25"))
TARGET = 0.1  # CPU seconds per interval second
CORE, OTHER_CORE = "0", "1"
ROOT = Path(__file__).resolve().parent.parent
DEVICE_USER, DEVICE_PASSWORD = "admin", "factory-sim"


def _build_site() -> tuple[wire.SiteLayout, str, str]:
    """36 Trn3 UltraServers, one per liquid-cooled rack with an A and a B feed; the layout the
    simulator serves, the agent's credential and the site's code."""
    from factory.agents import services as agents
    from tests.support.fleet import CTX

    site = bench_site("BAG1", "Agent", 20_000)
    racks = bench_racks(site, SERVERS)
    servers = bench_trn3_servers(site, racks, 2, "2026.09.1")
    _, token = agents.issue_agent(site, "bench-agent", CTX)
    layout: wire.SiteLayout = {
        "site": site.code,
        "racks": [
            {
                "name": rack.name,
                "feeds": {f"{rack.name}-A": 250_000.0, f"{rack.name}-B": 250_000.0},
                "servers": [
                    {
                        "serial": server.serial,
                        "family": "trn3",
                        "position": 1,
                        "firmware": "2026.09.1",
                    }
                ],
            }
            for rack, server in zip(racks, servers, strict=True)
        ],
    }
    return layout, token, site.code


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads, from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _report_urls(listing: wire.DeviceListing) -> list[str]:
    """Each device's telemetry resource: what a bare poller reads once per interval."""
    paths = {
        wire.DeviceKind.BMC: wire.CHIP_REPORT_PATH,
        wire.DeviceKind.PDU: wire.RACK_PDUS_PATH,
        wire.DeviceKind.CDU: wire.CDU_PATH,
    }
    return [d["url"].rstrip("/") + paths[wire.DeviceKind(d["kind"])] for d in listing["devices"]]


def _bare_poller(listing: wire.DeviceListing, ca: str, rounds: int) -> float:
    """CPU seconds per round of GET + JSON parse of every device's report, on core 0."""
    import requests

    urls = _report_urls(listing)
    session = requests.Session()
    session.auth = (DEVICE_USER, DEVICE_PASSWORD)
    session.trust_env = False  # as the agent: REQUESTS_CA_BUNDLE would override ``verify``
    session.verify = ca
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(CORE)})
    try:
        for url in urls:  # warm: connections open, as the agent's are
            session.get(url, timeout=30).json()
        started = time.process_time()
        for _ in range(rounds):
            for url in urls:
                response = session.get(url, timeout=30)
                response.raise_for_status()
                response.json()
        return (time.process_time() - started) / rounds
    finally:
        os.sched_setaffinity(0, before)
        session.close()


def run() -> dict:
    import urllib.request

    from factory.telemetry.models import ServerSample, TelemetrySource
    from tests.support.processes import BIN, Process, free_port, wait_for

    layout, token, site_code = _build_site()
    work = Path(tempfile.mkdtemp(prefix="bench-agent-"))  # layout, device list, CA, outbox
    log = ROOT / "bench" / "results" / "agent-processes.log"
    log.parent.mkdir(exist_ok=True)
    log.unlink(missing_ok=True)
    (work / "layout.json").write_text(json.dumps(layout))
    devices, ca = work / "devices.json", work / "site-ca.pem"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "factory.settings.base",
        "DATABASE_URL": BENCH_DB,
        "LOG_LEVEL": "WARNING",
        "TELEMETRY_INTERVAL_SECONDS": str(INTERVAL),
    }
    python = str(BIN / "python")
    elsewhere = ["taskset", "-c", OTHER_CORE]  # the site and the control plane off the agent's
    simulator = Process(
        [
            *elsewhere,
            python,
            "-m",
            "factory.simulator",
            "--layout",
            str(work / "layout.json"),
            "--devices-out",
            str(devices),
            "--fault-scale",
            "0",
            "--tls",
            "--ca-out",
            str(ca),
            "--log-level",
            "WARNING",
        ],
        env,
        log,
    ).start()
    port = free_port()
    web = Process(
        [
            *elsewhere,
            str(BIN / "gunicorn"),
            "factory.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--log-level",
            "warning",
        ],
        env,
        log,
    ).start()
    agent = None
    try:
        wait_for(devices.exists, 60, f"simulator device list (see {log})")
        wait_for(
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
            ),
            60,
            f"gunicorn (see {log})",
        )
        listing: wire.DeviceListing = json.loads(devices.read_text())
        agent = Process(
            [
                "taskset",
                "-c",
                CORE,
                python,
                "-m",
                "factory.siteagent",
                "--control-plane",
                f"http://127.0.0.1:{port}",
                "--devices",
                str(devices),
                "--ca-bundle",
                str(ca),
                "--outbox",
                str(work / "outbox.sqlite3"),
                "--interval",
                str(INTERVAL),
                "--log-level",
                "WARNING",
            ],
            {**env, "FACTORY_AGENT_TOKEN": token},
            log,
        ).start()
        assert agent.proc is not None
        pid = agent.proc.pid
        time.sleep(WARMUP_S)
        if not agent.alive:
            raise RuntimeError(f"the agent died (see {log})")
        samples_before = ServerSample.objects.count()
        cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
        time.sleep(INTERVALS * INTERVAL)
        cpu_after, wall_after = cpu_seconds(pid), time.monotonic()
        stored = ServerSample.objects.count() - samples_before
        agent.stop()
        agent = None
        bare = _bare_poller(listing, str(ca), rounds=3)
    finally:
        if agent is not None:
            agent.stop()
        web.stop()
        simulator.stop()
        shutil.rmtree(work, ignore_errors=True)
    intervals = (wall_after - wall_before) / INTERVAL
    per_interval = (cpu_after - cpu_before) / intervals
    if stored < SERVERS * (INTERVALS - 1):
        raise RuntimeError(
            f"the agent stored only {stored} samples in {intervals:.1f} intervals (see {log})"
        )
    numbered = sum(
        TelemetrySource.objects.filter(source__startswith="BAG1-TRN3-").values_list(
            "last_sequence", flat=True
        )
    )
    return write_result(
        "bench_agent",
        per_interval / INTERVAL,
        "CPU s per interval s",
        bare / INTERVAL,
        TARGET,
        held_by_value=True,
        site=site_code,
        servers=SERVERS,
        chips=SERVERS * CHIPS,
        devices=len(listing["devices"]),
        interval_s=INTERVAL,
        intervals_measured=round(intervals, 2),
        cpu_seconds_per_interval=round(per_interval, 3),
        bare_poller_cpu_seconds_per_interval=round(bare, 3),
        samples_stored_while_measured=stored,
        chip_samples_per_second=round(stored * CHIPS / (wall_after - wall_before)),
        server_reports_numbered=numbered,
        core=f"agent: taskset -c {CORE}; simulator and control plane: taskset -c {OTHER_CORE}",
        sink="the control plane: gunicorn (2 workers) on PostgreSQL, production ingest path",
        transport="HTTPS to the devices (site CA), HTTP to the control plane on loopback",
    )
