from typing import Any

from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    name = "provisioning"
    verbose_name = "Provisioning: lifecycle workflows and maintenance"

    def ready(self) -> None:
        from factory.agents.signals import command_finished
        from factory.telemetry.faults import fault_opened

        command_finished.connect(_wake_step, dispatch_uid="provisioning.wake_step")
        fault_opened.connect(_open_maintenance, dispatch_uid="provisioning.open_maintenance")
        from django.db.models.signals import post_save

        from provisioning.models import WorkflowTarget
        from provisioning.placement import lifecycle as units

        # A failed member (a fault on it, or its target failing) degrades its workload unit.
        fault_opened.connect(units.on_faults, dispatch_uid="provisioning.placement.unit_faults")
        post_save.connect(
            units.on_target_saved,
            sender=WorkflowTarget,
            dispatch_uid="provisioning.placement.unit_target_failed",
        )
        from provisioning.workflows.maintain import recheck_repairs
        from tenants.sovereignty.services.access import ACCESS_ENDED

        # Connected here, not only on import of the workflow: a revoke in a web process that
        # never loaded the maintain workflow must still wake the repairs it ends.
        ACCESS_ENDED.connect(recheck_repairs, dispatch_uid="provisioning.maintain.recheck_repairs")
        from factory.telemetry import metrics
        from provisioning import metrics as workflow_metrics

        metrics.register(workflow_metrics.collect)
        from factory.core import health
        from provisioning import scheduler

        health.report("scheduler", scheduler.check)


def _open_maintenance(sender: object, faults: list[Any], **kwargs: object) -> None:
    """A health rule found something wrong with a server that its policy drains: a maintain
    workflow for it (one per server, however many of its chips failed), and what became of it
    written on the faults (``report_fault``). A refusal (a capacity floor) leaves them waiting
    with the refusal's words; the health sweep tries again."""
    import logging

    from provisioning.jobs import JOB_CTX
    from provisioning.services import report_fault

    by_server: dict[int, list[Any]] = {}
    for fault in faults:
        if fault.drains:
            by_server.setdefault(fault.ultraserver_id, []).append(fault)
    for mine in by_server.values():
        try:
            report_fault(mine[0].ultraserver, mine[0].detail, JOB_CTX, faults=mine)
        except Exception:  # the signal's sender must not fail; the health sweep tries again
            logging.getLogger(__name__).exception(
                "no maintain workflow for %s yet", mine[0].ultraserver
            )


def _wake_step(sender, finished, **kwargs) -> None:
    """Agents answered: look at the waiting steps now rather than at their next poll."""
    import logging

    from django.db import DatabaseError

    from provisioning.models import Step
    from provisioning.queue import queue_steps

    step_ids = [
        int(requested_by.split(":", 1)[1])
        for _, requested_by in finished
        if requested_by.startswith("step:")
    ]
    if not step_ids:
        return
    try:
        Step.objects.filter(pk__in=step_ids, state="waiting").update(next_check_at=None)
    except DatabaseError as exc:  # e.g. a lock conflict: the steps' next poll finds the results
        logging.getLogger(__name__).warning("steps %s not woken: %s", step_ids, exc)
        return
    queue_steps(step_ids)
