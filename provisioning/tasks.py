"""Celery tasks: thin, idempotent, acks-late. Each is only a hint to look at the database.

The top of the import graph: only Celery's autodiscovery imports this module. Every task has a
stable ``name`` (beat's rows and ``provisioning.queue`` send by it), independent of where the
code lives.
"""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_process_init

from provisioning import jobs, leases, queue, rollout, runner


@worker_process_init.connect(dispatch_uid="provisioning.lease_heartbeat")
def _start_lease_heartbeat(**kwargs: object) -> None:
    """Each prefork child keeps the leases of the steps it runs (``provisioning.leases``)."""
    leases.start_heartbeat()


@shared_task(name=queue.RUN_STEP, acks_late=True, ignore_result=True)
def run_step(step_id: int) -> str:
    return runner.run_step(step_id)


@shared_task(name=queue.RUN_STEPS, acks_late=True, ignore_result=True)
def run_steps(step_ids: list[int]) -> dict[int, str]:
    return runner.run_steps(step_ids)


@shared_task(name=queue.ADVANCE_WORKFLOW, acks_late=True, ignore_result=True)
def advance_workflow(workflow_id: int) -> str:
    return rollout.advance(workflow_id)


@shared_task(name="provisioning.reconcile", acks_late=True, ignore_result=True)
def reconcile() -> dict:
    return jobs.reconcile_job()


@shared_task(name="provisioning.health_sweep", acks_late=True, ignore_result=True)
def health_sweep() -> dict:
    return jobs.health_sweep()


@shared_task(name="provisioning.firmware_compliance_scan", acks_late=True, ignore_result=True)
def firmware_compliance_scan() -> dict:
    return jobs.firmware_compliance_scan()


@shared_task(name="provisioning.detect_stale_agents", acks_late=True, ignore_result=True)
def detect_stale_agents() -> dict:
    return jobs.detect_stale_agents()


@shared_task(name="provisioning.telemetry_rollup", acks_late=True, ignore_result=True)
def telemetry_rollup() -> dict:
    return jobs.telemetry_rollup()


@shared_task(name="provisioning.telemetry_retention", acks_late=True, ignore_result=True)
def telemetry_retention() -> dict:
    return jobs.telemetry_retention()


@shared_task(name="provisioning.noop", ignore_result=True)
def noop() -> None:
    """For the benchmark's raw-Celery baseline."""


#: The names the tasks had before they were given stable ones (their module paths). Messages
#: already queued under them, or sent by a process of the previous release during a rolling
#: deploy, still run instead of being dropped as unregistered. Remove once no release sends
#: them (the reconciler would re-send lost step hints anyway; a scheduled job would skip a run).
LEGACY_NAMES: dict[str, str] = {}

for _task in (
    run_step,
    run_steps,
    advance_workflow,
    reconcile,
    health_sweep,
    firmware_compliance_scan,
    detect_stale_agents,
    telemetry_rollup,
    telemetry_retention,
    noop,
):
    _legacy = f"provisioning.tasks.{_task.__name__}"
    shared_task(name=_legacy, acks_late=_task.acks_late, ignore_result=True)(_task.run)
    LEGACY_NAMES[_legacy] = _task.name
