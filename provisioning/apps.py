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


def _open_maintenance(sender, faults, **kwargs) -> None:
    """A health rule found something wrong with a server: a maintain workflow for it (one per
    server, however many of its chips failed). A refusal (say, a capacity floor) is logged; the
    health sweep tries again."""
    import logging

    from provisioning.jobs import JOB_CTX
    from provisioning.services import report_fault
    from tenants.errors import Conflict

    done = set()
    for fault in faults:
        if fault.ultraserver_id in done:
            continue
        done.add(fault.ultraserver_id)
        try:
            report_fault(fault.ultraserver, fault.detail, JOB_CTX)
        except Conflict as refusal:
            logging.getLogger(__name__).warning(
                "no maintain workflow for %s yet: %s", fault.ultraserver, refusal.message
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
