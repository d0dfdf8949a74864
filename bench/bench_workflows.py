"""A rolling upgrade of 1,000 UltraServers through real Celery + Redis + PostgreSQL, against
raw Celery no-op throughput measured in the same run on the same workers.

Hardware is instant: an agent thread claims commands and answers them at once through the
command-queue services. Both measurements use a private redis-server and two prefork worker
processes (concurrency 1 each, like the 2 cores here), started with the e2e tests' helpers.
Value: seconds per workflow step; baseline: seconds per no-op task; target (issue): steps/s
within 10× of no-op tasks/s.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.common import BENCH_DB, bench_racks, bench_site, write_result
from factory.wire import BurnInResult, CommandKind, CommandParam, HardwareState

SERVERS, NOOPS, TARGET = 1000, 20000, 10.0
CONCURRENCY = int(os.environ.get("BENCH_WORKER_CONCURRENCY", "1"))
ROOT = Path(__file__).resolve().parent.parent


def _build_fleet():
    from factory.agents import services as agents
    from factory.catalog.models import UltraServerModel
    from factory.inventory.models import Chip, PowerFeed, UltraServer
    from provisioning.models import FirmwareRelease, MaintenanceWindow
    from tests.support.fleet import CTX

    model = UltraServerModel.objects.get(slug="trn3-ultraserver")
    site = bench_site("BWF1", "Workflows", 250000)
    racks = bench_racks(site, SERVERS)
    PowerFeed.objects.bulk_create(
        PowerFeed(rack=r, name=f"{r.name}-{p}", path=p, voltage=400, amperage=400, phase="three")
        for r in racks
        for p in "AB"
    )
    servers = UltraServer.objects.bulk_create(
        UltraServer(
            serial=f"BWF1-{i:04d}",
            model=model,
            rack=r,
            position=1,
            tenant_id=site.tenant_id,
            lifecycle_state="in-service",
            firmware_version="1.0",
        )
        for i, r in enumerate(racks)
    )
    Chip.objects.bulk_create(
        (
            Chip(ultraserver=s, index=c, serial=f"{s.serial}-C{c:03d}")
            for s in servers
            for c in range(model.chip_count)
        ),
        batch_size=20000,
    )
    for version, baseline in (("1.0", True), ("2.0", False)):
        FirmwareRelease.objects.create(
            model=model, version=version, baseline=baseline, origin="firmware.provider.example"
        )
    MaintenanceWindow.objects.create(
        site=site,
        name="always",
        weekdays=list(range(7)),
        start_time=dt.time(0),
        duration_minutes=1440,
        status="approved",
    )
    agent, _ = agents.issue_agent(site, "bench", CTX)
    return site, servers, agent


class InstantAgent(threading.Thread):
    """A site whose hardware does everything at once."""

    def __init__(self, agent):
        super().__init__(daemon=True)
        self.agent, self.halt, self.answered = agent, threading.Event(), 0
        self.state: dict[int, dict] = {}

    def carry_out(self, command) -> dict:
        box = self.state.setdefault(
            command.ultraserver_id,
            {
                HardwareState.FIRMWARE_VERSION: "1.0",
                HardwareState.INACTIVE_FIRMWARE_VERSION: "",
                HardwareState.DRAINED: False,
            },
        )
        if command.kind == CommandKind.FLASH_FIRMWARE:
            box[HardwareState.INACTIVE_FIRMWARE_VERSION] = box[HardwareState.FIRMWARE_VERSION]
            box[HardwareState.FIRMWARE_VERSION] = command.params[CommandParam.VERSION]
        elif command.kind in (CommandKind.DRAIN, CommandKind.UNDRAIN):
            box[HardwareState.DRAINED] = command.kind == CommandKind.DRAIN
        if command.kind == CommandKind.BURN_IN:
            return {BurnInResult.TESTED: 144, BurnInResult.FAILED_CHIPS: []}
        return dict(box)

    def run(self):
        from django.db import connection

        from factory.agents import services as agents

        try:
            while not self.halt.is_set():
                results = [
                    agents.CommandResult(command.id, True, self.carry_out(command))
                    for command in agents.claim(self.agent, limit=100, wait_seconds=0.2)
                ]
                if results:  # a site agent reports what finished together in one request
                    agents.complete_many(self.agent, results)
                    self.answered += len(results)
        finally:
            connection.close()


def _queue_length(redis_client, queue: str) -> int:
    return redis_client.llen(queue) + redis_client.hlen("unacked")


def rollout() -> dict:
    """The measured rolling upgrade; runs in a child process whose settings point at the
    private broker (``python -m bench.bench_workflows``)."""
    import django

    django.setup()
    from django.db import connection

    from provisioning import jobs, services
    from provisioning.models import Step
    from tests.support.fleet import CTX

    _site, servers, agent = _build_fleet()
    answering = InstantAgent(agent)
    answering.start()
    start = time.perf_counter()
    workflow, _ = services.create_workflow(
        "upgrade",
        servers,
        CTX,
        # The default spec (canary 1, batches of 10, one per rack and feed at a time), soak
        # 0 only for time's sake: what a user gets, not a bench-friendly batch of 250.
        spec={"firmware_version": "2.0", "soak_seconds": 0},
    )
    last_reconcile = time.monotonic()
    while True:
        workflow.refresh_from_db()
        if workflow.state in ("succeeded", "failed", "paused"):
            break
        if time.monotonic() - last_reconcile > 10:  # beat's job, every 10 s as in production
            jobs.reconcile()
            last_reconcile = time.monotonic()
        time.sleep(0.2)
    elapsed = time.perf_counter() - start
    answering.halt.set()
    answering.join(timeout=10)
    steps = Step.objects.filter(workflow=workflow, state="succeeded").count()
    connection.close()
    return {
        "state": workflow.state,
        "reason": workflow.state_reason,
        "elapsed": elapsed,
        "steps": steps,
        "answered": answering.answered,
    }


def run() -> dict:
    import json

    import redis as redis_lib
    from celery import Celery

    from tests.support.processes import free_port, redis_process, worker_process

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    queue = "bench-workflows"
    log = ROOT / "bench" / "results" / "workflows-processes.log"
    log.unlink(missing_ok=True)
    redis = redis_process(port, log)
    client = redis_lib.Redis.from_url(url)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "factory.settings.base",
        "DATABASE_URL": BENCH_DB,
        "REDIS_URL": url,
        "CELERY_BROKER_URL": url,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
    }
    workers = []
    try:
        # Baseline: NOOPS no-op tasks, queued first, then drained by the two workers.
        sender = Celery(broker=url)
        sender.conf.task_default_queue = queue
        with sender.producer_or_acquire() as producer:
            for _ in range(NOOPS):
                sender.send_task("provisioning.noop", producer=producer)
        # The steps' queue (named in env) and every other concern's, as make up's worker takes.
        from django.conf import settings

        queues = (queue, settings.JOBS_QUEUE, settings.TELEMETRY_QUEUE, settings.WEBHOOK_QUEUE)
        workers = [
            worker_process(env, log, f"bench{i}", concurrency=CONCURRENCY, queues=queues)
            for i in range(2)
        ]
        while _queue_length(client, queue) == NOOPS:
            time.sleep(0.001)
        start = time.perf_counter()
        while _queue_length(client, queue):
            time.sleep(0.001)
        noop_seconds = (time.perf_counter() - start) / NOOPS
        child = subprocess.run(
            [sys.executable, "-m", "bench.bench_workflows"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if child.returncode != 0:
            raise RuntimeError(child.stderr[-3000:])
        outcome = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        for worker in workers:
            worker.stop()
        redis.stop()
    if outcome["state"] != "succeeded":
        raise RuntimeError(f"rollout {outcome['state']}: {outcome['reason']}")
    step_seconds = outcome["elapsed"] / outcome["steps"]
    return write_result(
        "rolling_upgrade_vs_raw_celery",
        step_seconds * 1000,
        "ms per step",
        noop_seconds * 1000,
        TARGET,
        steps=outcome["steps"],
        servers=SERVERS,
        spec="the upgrade's defaults (canary 1, batch_size 10, 1 per rack and feed), soak 0",
        steps_per_s=round(outcome["steps"] / outcome["elapsed"], 1),
        noop_tasks_per_s=round(1 / noop_seconds, 1),
        rollout_seconds=round(outcome["elapsed"], 1),
        commands_answered=outcome["answered"],
    )


if __name__ == "__main__":
    import json

    print(json.dumps(rollout()))
