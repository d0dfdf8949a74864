"""Two Celery beat replicas (issue 18 item 4), for real: two ``celery beat`` processes, a
worker and a private Redis as the broker. One holds the scheduler lease and sends the jobs;
killed (SIGKILL, no goodbye), the other takes the lease once it runs out and the reconciler
runs again within a period of the last run plus the lease; both gone, ``/readyz/scheduler``
turns 503 within a lease, ``factory_scheduler_up`` 0, and ``/readyz`` still answers 200 (the
web replicas stay in the load balancer)."""

from __future__ import annotations

import time
from itertools import pairwise

import pytest

from provisioning import scheduler
from provisioning.models import JobRun, SchedulerLease
from tests.support.processes import (
    app_env,
    beat_process,
    free_port,
    redis_process,
    until,
    worker_process,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
LEASE = 3.0  # SCHEDULER_LEASE_SECONDS for the replicas (the default is 10)
PERIOD = 10.0  # the reconciler's (provisioning/migrations/0002_scheduled_jobs.py)


def reconciler_runs() -> list[JobRun]:
    return list(JobRun.objects.filter(job="reconciler", outcome="ok").order_by("started_at"))


def test_the_standby_beat_takes_over_and_readiness_sees_when_none_is_left(
    tmp_path, client, settings
):
    settings.SCHEDULER_LEASE_SECONDS = LEASE  # as the replicas are told, for this process's reads
    port = free_port()
    broker = redis_process(port, tmp_path / "redis.log")
    env = app_env(f"redis://127.0.0.1:{port}/0", SCHEDULER_LEASE_SECONDS=str(LEASE))
    worker = worker_process(env, tmp_path / "worker.log", "beat-failover")
    beats = {}
    try:
        for name in ("a", "b"):
            beat = beat_process(env, tmp_path / f"beat-{name}.log", tmp_path / f"schedule-{name}")
            beats[beat.proc.pid] = beat
        lease = until(SchedulerLease.objects.first, 60, "a beat holding the lease")
        leader_pid = int(lease.holder.split(":")[1])
        assert leader_pid in beats, (lease.holder, list(beats))
        until(lambda: len(reconciler_runs()) >= 2, 60, "two reconciler runs sent by the leader")
        assert client.get("/readyz/scheduler").status_code == 200

        # The leader is lost; the standby takes the lease and the reconciler runs on.
        beats[leader_pid].kill()
        killed = time.monotonic()
        last_before = reconciler_runs()[-1].started_at
        taken = until(
            lambda: SchedulerLease.objects.exclude(holder=lease.holder).first(),
            LEASE * 3,
            "the standby taking the lease",
        )
        took_over = time.monotonic() - killed
        standby_pid = int(taken.holder.split(":")[1])
        assert standby_pid in beats and standby_pid != leader_pid
        assert took_over <= LEASE + scheduler.renew_every() + 1.5, took_over
        after = until(
            lambda: [r for r in reconciler_runs() if r.started_at > last_before],
            PERIOD + LEASE + 10,
            "a reconciler run after the takeover",
        )[0]
        gap = (after.started_at - last_before).total_seconds()
        assert gap <= PERIOD + LEASE + scheduler.renew_every() + 2, gap
        # ... and goes on every period
        until(
            lambda: len([r for r in reconciler_runs() if r.started_at > last_before]) >= 2,
            PERIOD + 10,
            "the standby's second reconciler run",
        )
        assert client.get("/readyz/scheduler").status_code == 200
        # Never two senders at once: runs are a period apart, closer only at the takeover (the
        # standby sends what its own stale schedule says is due, once).
        runs = reconciler_runs()
        spacing = [(b.started_at - a.started_at).total_seconds() for a, b in pairwise(runs)]
        assert min(spacing) > 1.0, spacing
        assert sum(1 for gap_s in spacing if gap_s < PERIOD - 1.5) <= 1, spacing
        print(f"takeover {took_over:.1f} s; reconciler gap {gap:.1f} s; spacing {spacing}")

        # No replica left: readiness of the scheduler fails within a lease and a bit.
        beats[standby_pid].kill()
        gone = time.monotonic()
        until(
            lambda: client.get("/readyz/scheduler").status_code == 503,
            LEASE + scheduler.renew_every() + 5,
            "/readyz/scheduler turning 503",
        )
        noticed = time.monotonic() - gone
        assert noticed < 60
        reason = client.get("/readyz/scheduler").json()["reason"]
        assert reason.startswith("stale: ") and taken.holder in reason, reason
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["reported"]["scheduler"] == reason
        print(f"scheduler stale noticed {noticed:.1f} s after the last beat died")
    finally:
        for beat in beats.values():
            beat.stop()
        worker.stop()
        broker.stop()
