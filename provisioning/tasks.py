"""Celery tasks: thin, idempotent, acks-late. Each is only a hint to look at the database."""

from __future__ import annotations

from celery import shared_task

from provisioning import engine, jobs


@shared_task(acks_late=True, ignore_result=True)
def run_step(step_id: int) -> str:
    return engine.run_step(step_id)


@shared_task(acks_late=True, ignore_result=True)
def run_steps(step_ids: list[int]) -> dict:
    return engine.run_steps(step_ids)


@shared_task(acks_late=True, ignore_result=True)
def advance_workflow(workflow_id: int) -> str:
    return engine.advance(workflow_id)


@shared_task(acks_late=True, ignore_result=True)
def reconcile() -> dict:
    return jobs.reconcile_job()


@shared_task(acks_late=True, ignore_result=True)
def health_sweep() -> dict:
    return jobs.health_sweep()


@shared_task(acks_late=True, ignore_result=True)
def firmware_compliance_scan() -> dict:
    return jobs.firmware_compliance_scan()


@shared_task(acks_late=True, ignore_result=True)
def detect_stale_agents() -> dict:
    return jobs.detect_stale_agents()


@shared_task(acks_late=True, ignore_result=True)
def telemetry_rollup() -> dict:
    return jobs.telemetry_rollup()


@shared_task(acks_late=True, ignore_result=True)
def telemetry_retention() -> dict:
    return jobs.telemetry_retention()


@shared_task(ignore_result=True)
def noop() -> None:
    """For the benchmark's raw-Celery baseline."""
