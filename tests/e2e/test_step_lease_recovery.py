"""A worker lost mid-step costs a lease and a reconciler period, and a live worker's step is
never taken from it (issue 18 item 4), for real: Celery workers on a private Redis, the
reconciler sent as beat sends it, and a second PostgreSQL session holding the UltraServer's
row so that the worker's step is caught mid-act (its own row locked, its transaction open).

- Alive past its lease: the worker waits on the server's row for twice the lease while the
  reconciler runs; the step is not handed back (recovery skips locked rows), and once the row
  is free that same worker finishes it.
- Killed mid-step (SIGKILL): its transaction dies with it, nothing it did commits; the step is
  handed back once its lease runs out, and another worker carries it on.
"""

from __future__ import annotations

import threading
import time

import pytest

from factory.inventory.models import UltraServer
from provisioning import queue, rollout, services
from provisioning.models import Step, WorkflowEvent
from tests.support.fleet import CTX, build_fleet
from tests.support.processes import (
    app_env,
    free_port,
    hint_sender,
    other_session,
    redis_process,
    until,
    worker_process,
)
from tests.support.workflows import put_in_service

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
LEASE = 3  # WORKFLOW_LEASE_SECONDS for the workers (the default is 15)
PERIOD = 1.0  # the reconciler's, as beat would send it (10 s in production)


def first_step(server) -> Step:
    _, workflow = services.report_fault(put_in_service(server), "HBM ECC storm on chip 9", CTX)
    rollout.advance(workflow.pk)
    step = Step.objects.filter(workflow=workflow).order_by("seq").first()
    assert step.state == "ready", step.state
    return step


def hold_server(session, server) -> None:
    session.execute(
        f'SELECT 1 FROM "{UltraServer._meta.db_table}" WHERE id = %s FOR UPDATE', [server.pk]
    )


def lease_events(step: Step) -> int:
    return WorkflowEvent.objects.filter(workflow_id=step.workflow_id, kind="lease-expired").count()


def test_a_lost_worker_costs_a_lease_and_a_live_one_keeps_its_step(tmp_path):
    fleet = build_fleet()
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    broker = redis_process(port, tmp_path / "redis.log")
    env = app_env(url, WORKFLOW_LEASE_SECONDS=str(LEASE))
    hints = hint_sender(url)
    stop = threading.Event()

    def reconciler() -> None:
        while not stop.wait(PERIOD):
            hints.send_task("provisioning.reconcile")

    ticker = threading.Thread(target=reconciler, daemon=True)
    workers = [worker_process(env, tmp_path / "w1.log", "lease-w1", concurrency=1)]
    try:
        ticker.start()
        # --- alive, caught mid-act for twice its lease: it keeps the step -------------------
        alive = first_step(fleet.servers["alpha"])
        with other_session() as holder:
            hold_server(holder, fleet.servers["alpha"])
            hints.send_task(queue.RUN_STEP, args=[alive.pk])
            running = until(
                lambda: Step.objects.filter(pk=alive.pk, state="running").first(),
                30,
                "the worker claiming the step",
            )
            time.sleep(2 * LEASE + PERIOD)  # its lease long run out; reconciler passes meanwhile
            still = Step.objects.get(pk=alive.pk)
            assert still.state == "running" and still.lease_owner == running.lease_owner
            assert lease_events(alive) == 0
            holder.rollback()  # the row free: the worker goes on
        done = until(
            lambda: Step.objects.exclude(state="running").filter(pk=alive.pk).first(),
            15,
            "the live worker finishing its step",
        )
        assert done.state in ("waiting", "succeeded"), (done.state, done.error)
        assert done.external_ref  # its drain command submitted, by the worker that claimed it
        assert lease_events(alive) == 0 and "lost_leases" not in done.output

        # --- killed mid-act: handed back once its lease runs out, carried on by another ----
        lost = first_step(fleet.servers["beta"])
        with other_session() as holder:
            hold_server(holder, fleet.servers["beta"])
            hints.send_task(queue.RUN_STEP, args=[lost.pk])
            until(
                lambda: Step.objects.filter(pk=lost.pk, state="running").exists(),
                30,
                "the worker claiming the step",
            )
            claimed_at = time.monotonic()
            time.sleep(0.5)  # in its act, waiting on the server's row
            workers[0].kill()
            killed = time.monotonic()
            holder.rollback()
        workers.append(worker_process(env, tmp_path / "w2.log", "lease-w2", concurrency=1))
        handed_back = until(
            lambda: lease_events(lost) >= 1, LEASE + PERIOD + 15, "the step handed back"
        )
        recovered_after = time.monotonic() - killed
        assert handed_back
        carried_on = until(
            lambda: (
                Step.objects.filter(pk=lost.pk, state__in=("waiting", "succeeded"))
                .exclude(external_ref="")
                .first()
            ),
            30,
            "another worker carrying the step on (its drain command submitted)",
        )
        assert carried_on.output.get("lost_leases") == 1, carried_on.output
        # the lease counted from the claim, then at most a reconciler pass and a hint
        assert recovered_after <= LEASE - (killed - claimed_at) + PERIOD + 3, recovered_after
        print(f"killed mid-step: handed back {recovered_after:.1f} s later (lease {LEASE} s)")
    finally:
        stop.set()
        for worker in workers:
            worker.stop()
        broker.stop()
