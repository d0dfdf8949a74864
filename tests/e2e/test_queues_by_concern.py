"""Queues by concern (issue 18 item 5), with real processes: a private Redis and Celery workers
that each take one concern's queue, as the compose file runs them. A backlog of workflow-step
hints nobody is taking does not delay the scheduled jobs or the telemetry roll-up, and a worker
of the steps' queue never takes a job: each concern moves on its own workers."""

from __future__ import annotations

import time

import pytest
import redis as redis_client
from django.conf import settings

from provisioning.models import JobRun
from tests.support.processes import (
    app_env,
    free_port,
    hint_sender,
    redis_process,
    worker_process,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

BACKLOG = 2000


def wait_for_run(job: str, timeout: float) -> JobRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = JobRun.objects.filter(job=job, finished_at__isnull=False).first()
        if run is not None:
            return run
        time.sleep(0.2)
    raise AssertionError(f"no run of {job} within {timeout} s")


def test_each_concern_moves_on_its_own_workers_whatever_waits_on_another(tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    broker = redis_process(port, tmp_path / "redis.log")
    env = app_env(url)
    hints, queued = hint_sender(url), redis_client.Redis.from_url(url)
    workers = []
    try:
        # a backlog on the steps' queue that nobody takes (its workers are all busy, or gone)
        with hints.connection_for_write() as conn, conn.Producer() as producer:
            for _ in range(BACKLOG):
                hints.send_task("provisioning.noop", producer=producer)
        steps_queue = settings.CELERY_TASK_DEFAULT_QUEUE
        assert queued.llen(steps_queue) == BACKLOG
        workers.append(
            worker_process(env, tmp_path / "jobs.log", "jobs", queues=(settings.JOBS_QUEUE,))
        )
        workers.append(
            worker_process(
                env, tmp_path / "telemetry.log", "telemetry", queues=(settings.TELEMETRY_QUEUE,)
            )
        )
        started = time.monotonic()
        hints.send_task("provisioning.reconcile")
        hints.send_task("provisioning.telemetry_rollup")
        reconciled = wait_for_run("reconciler", 60)
        rolled = wait_for_run("telemetry-rollup", 60)
        took = time.monotonic() - started
        assert reconciled.outcome == rolled.outcome == "ok", (reconciled.error, rolled.error)
        assert queued.llen(steps_queue) == BACKLOG  # not one step hint was taken by them
        print(f"jobs ran in {took:.1f} s behind a backlog of {BACKLOG} step hints")

        # a worker of the steps' queue drains its backlog and never takes a job
        JobRun.objects.all().delete()
        workers.append(worker_process(env, tmp_path / "steps.log", "steps", queues=(steps_queue,)))
        workers[0].kill()  # the jobs' worker is gone: a job waits for one of its own
        hints.send_task("provisioning.health_sweep")
        deadline = time.monotonic() + 60
        while queued.llen(steps_queue) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert queued.llen(steps_queue) == 0, "the steps' worker did not drain its queue"
        time.sleep(1)
        assert not JobRun.objects.filter(job="health-sweep").exists()
        assert queued.llen(settings.JOBS_QUEUE) == 1  # the sweep waits on its own queue
    finally:
        for worker in workers:
            worker.kill()
        broker.kill()
