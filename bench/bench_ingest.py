"""Telemetry of a one-million-chip fleet (6,945 Trn3 UltraServers × 144 chips every 10 s =
100,000 chip-samples/s) ingested end to end: HTTP request in (gunicorn, the real agent
endpoint, agent credential), batch parsed and checked, rows stored with COPY, latest state and
health rules updated, committed. Sustained for 60 s; load from ``bench.replay`` in its own
process on the same 2 cores.

Baseline, same run: raw binary ``COPY`` of the same packed rows into the same table from this
process, no HTTP and no checks. Value: chip-samples/s stored; the issue's target is absolute
(100,000 chip-samples/s sustained), and the ratio to raw COPY is reported beside it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import BENCH_DB, bench_racks, bench_site, bench_trn3_servers, write_result
from factory.wire import Metric

SERVERS, CHIPS = 6945, 144
TARGET = 100_000.0  # chip-samples/s
SECONDS = float(os.environ.get("BENCH_INGEST_SECONDS", "60"))
CONNECTIONS = int(os.environ.get("BENCH_INGEST_CONNECTIONS", "4"))
PER_REQUEST = int(os.environ.get("BENCH_INGEST_REPORTS_PER_REQUEST", "60"))
WEB_WORKERS = int(os.environ.get("BENCH_INGEST_WEB_WORKERS", "3"))
ROOT = Path(__file__).resolve().parent.parent


def _build_fleet():
    """Servers only (no chip rows, no placement checks): ingest looks at serial, site and the
    model's chip count, nothing else."""
    from factory.agents import services as agents
    from tests.support.fleet import CTX

    site = bench_site("BTL1", "Telemetry", 2_000_000)
    racks = bench_racks(site, SERVERS)
    servers = bench_trn3_servers(site, racks, 5, "1.0")
    _, token = agents.issue_agent(site, "bench-agent", CTX)
    return [s.serial for s in servers], [s.pk for s in servers], token


def _raw_copy(server_ids: list[int], rounds: int) -> float:
    """Chip-samples/s of plain binary COPY of the same packed rows."""
    from django.db import connection

    from bench.replay import chips_fragment
    from factory.telemetry import codec
    from factory.telemetry.ingest import SAMPLE_COLUMNS, SAMPLE_COPY_TYPES
    from factory.telemetry.models import ServerSample

    columns = [json.loads(chips_fragment(i)) for i in range(16)]
    packed = [tuple(codec.pack(m, c[m]) for m in codec.METRICS) for c in columns]
    power, temp, util = Metric.POWER_W, Metric.TEMP_C, Metric.UTILIZATION
    aggregates = [
        (float(sum(c[power])), max(c[temp]), sum(c[temp]) / CHIPS, sum(c[util]) / CHIPS, 0)
        for c in columns
    ]
    table = ServerSample._meta.db_table
    statement = f"COPY {table} ({', '.join(SAMPLE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    connection.ensure_connection()
    raw = connection.connection
    rows = 0
    started = time.perf_counter()
    for r in range(rounds):
        ts = dt.datetime.now(dt.UTC)
        with raw.transaction(), raw.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(SAMPLE_COPY_TYPES)
            for i, pk in enumerate(server_ids):
                copy.write_row((pk, ts, CHIPS, *packed[i % 16], *aggregates[i % 16]))
        rows += len(server_ids)
        del r
    elapsed = time.perf_counter() - started
    return rows * CHIPS / elapsed


def run() -> dict:
    from django.db import connection

    from factory.telemetry.models import ServerSample
    from tests.support.processes import BIN, Process, free_port, wait_for

    serials, server_ids, token = _build_fleet()
    log = ROOT / "bench" / "results" / "ingest-processes.log"
    log.parent.mkdir(exist_ok=True)
    log.unlink(missing_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "factory.settings.base",
        "DATABASE_URL": BENCH_DB,
        "LOG_LEVEL": "WARNING",
    }
    web = Process(
        [
            str(BIN / "gunicorn"),
            "factory.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(WEB_WORKERS),
            "--log-level",
            "warning",
        ],
        env,
        log,
    ).start()
    try:
        import urllib.request

        wait_for(
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
            ),
            30,
            f"gunicorn (see {log})",
        )
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(serials, f)
        client = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.replay",
                f"http://127.0.0.1:{port}",
                token,
                f.name,
                str(SECONDS),
                str(CONNECTIONS),
                str(PER_REQUEST),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=SECONDS + 300,
        )
        if client.returncode != 0:
            raise RuntimeError(client.stderr[-3000:])
        load = json.loads(client.stdout.strip().splitlines()[-1])
    finally:
        web.stop()
    stored_rows = ServerSample.objects.filter(ultraserver_id__in=server_ids).count()
    if stored_rows * CHIPS != load["chip_samples"]:
        raise RuntimeError(
            f"stored {stored_rows} rows but the server acknowledged "
            f"{load['chip_samples']} chip samples"
        )
    ingest_rate = load["chip_samples"] / load["elapsed"]
    latencies = sorted(load["latencies"])
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
    ServerSample.objects.filter(ultraserver_id__in=server_ids).delete()
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM {ServerSample._meta.db_table}")
    copy_rate = _raw_copy(server_ids, rounds=6)
    result = write_result(
        "telemetry_ingest_one_million_chips",
        ingest_rate,
        "chip-samples/s",
        copy_rate,
        TARGET,
        lower_is_better=False,
        held_by_value=True,
        seconds=round(load["elapsed"], 1),
        requests=load["requests"],
        errors=load["errors"],
        replayed=load["replayed"],
        reports_per_request=PER_REQUEST,
        chip_samples_per_request=PER_REQUEST * CHIPS,
        p50_request_ms=round(statistics.median(latencies), 1) if latencies else None,
        p99_request_ms=round(p99, 1),
        raw_copy_chip_samples_per_s=round(copy_rate),
        web_workers=WEB_WORKERS,
        client_connections=CONNECTIONS,
    )
    return result
