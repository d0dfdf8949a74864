"""Steps that wait for a person (a technician's dispatch, a repair, any manual input): how long
they may wait before someone is told (escalation, not failure), and how a cancel stops them
now instead of waiting for that person to turn up.

A cancelled server is left where the waiting found it: drained, in maintenance and flagged
for it (a true lifecycle state, read from the record the drain step left), its hold released.
"""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from factory.inventory.models import UltraServer
from factory.inventory.services import transition
from provisioning.choices import StepState, TargetState
from provisioning.history import event
from provisioning.models import Notification, Step, Workflow, WorkflowTarget
from provisioning.workflows import definition_for
from provisioning.workflows.params import DEFAULT_PERSON_TIMEOUT, PERSON_TIMEOUT
from tenants.events.kinds import EventKind
from tenants.events.services import emit
from tenants.services.changes import ChangeContext

#: The waiting steps' states a cancel stops.
_OPEN_STEP_STATES = (StepState.PENDING, StepState.READY, StepState.WAITING)


def waits_for_person(workflow: Workflow, step_name: str) -> bool:
    """Whether the step is one a person hands input to (``StepDefinition.inputs``)."""
    return definition_for(workflow.kind).manual_step(step_name) is not None


def person_timeout(workflow: Workflow) -> dt.timedelta:
    return dt.timedelta(seconds=int(workflow.spec.get(PERSON_TIMEOUT.name, DEFAULT_PERSON_TIMEOUT)))


def escalation_due(step: Step, workflow: Workflow, now: dt.datetime) -> dt.datetime | None:
    """When the step, waiting for a person since it started, escalates; ``None`` when it has
    already escalated or has not started."""
    if step.started_at is None or step.output.get("escalated_at"):
        return None
    return step.started_at + person_timeout(workflow)


def escalate_if_overdue(
    step: Step, workflow: Workflow, now: dt.datetime, serial: str
) -> tuple[str, str] | None:
    """Called by the runner after a step that waits for a person waited again. Overdue: noted
    in the step's output (once), a notification and a ``workflow.escalated`` event for the
    site's tenant (its automation hears of it, not only the console), and the history event
    returned to the caller, which writes it with its batch. The step keeps waiting."""
    due = escalation_due(step, workflow, now)
    if due is None or now < due:
        return None
    step.output["escalated_at"] = now.isoformat()
    waited = int((now - step.started_at).total_seconds()) if step.started_at else 0
    limit = int(person_timeout(workflow).total_seconds())
    message = (
        f"{serial}: {step.name} has waited for a person for {waited // 60} min "
        f"(limit {limit // 60} min); escalated"
    )
    Notification.objects.create(
        tenant_id=workflow.site.tenant_id,
        site_id=workflow.site_id,
        workflow=workflow,
        kind="escalated",
        message=message,
    )
    emit(
        EventKind.WORKFLOW_ESCALATED,
        workflow,
        tenant=workflow.site.tenant_id,
        data={
            "workflow_kind": workflow.kind,
            "site": workflow.site.code,
            "server": serial,
            "step": step.name,
            "waited_seconds": waited,
            "limit_seconds": limit,
            "message": message,
        },
    )
    return "escalated", message


def next_check(
    step: Step, workflow: Workflow, now: dt.datetime, wait_until: dt.datetime
) -> dt.datetime:
    """The step's next look, no later than its escalation (a 1 h poll would miss a short one)."""
    due = escalation_due(step, workflow, now)
    return min(wait_until, due) if due is not None and due > now else wait_until


def stop_at_waits(workflow: Workflow, ctx: ChangeContext, reason: str) -> list[WorkflowTarget]:
    """Cancel: every server whose current step waits for a person stops now. Its open steps
    are skipped, the server is left in its true recorded state and flagged for maintenance,
    the target is skipped with that state verified, and the hold released. The caller holds
    the workflow's row lock and then asks the rollout to finish the workflow."""
    stopped: list[WorkflowTarget] = []
    waiting = (
        Step.objects.select_for_update(of=("self",))
        .select_related("target")
        .filter(workflow=workflow, state=StepState.WAITING, target__state=TargetState.RUNNING)
        .order_by("target_id", "seq")
    )
    for step in waiting:
        if not waits_for_person(workflow, step.name) or step.target is None:
            continue
        stopped.append(stop_target(workflow, step, ctx, reason))
    return stopped


def stop_target(workflow: Workflow, step: Step, ctx: ChangeContext, reason: str) -> WorkflowTarget:
    """One server stopped at its wait for a person (its open steps skipped, left in its true
    state and flagged for maintenance, released)."""
    now = timezone.now()
    target = step.target
    assert target is not None
    Step.objects.filter(target=target, state__in=_OPEN_STEP_STATES).update(
        state=StepState.SKIPPED, finished_at=now, next_check_at=None
    )
    server = UltraServer.objects.select_for_update().get(pk=target.ultraserver_id)
    why = f"{workflow.kind} #{workflow.pk} cancelled at {step.name}: {reason}"[:500]
    transition(
        server.pk,
        server.lifecycle_state,
        ctx,
        fields={"in_maintenance": True, "fault_reason": server.fault_reason or why},
    )
    server.refresh_from_db()
    target.verified_state = {
        "source": "control-plane record",
        "lifecycle_state": server.lifecycle_state,
        "firmware_version": server.firmware_version,
        "in_maintenance": server.in_maintenance,
    }
    target.state = TargetState.SKIPPED
    target.active = False
    target.finished_at = now
    target.error = f"cancelled while {step.name} waited for a person"[:1000]
    target.save(update_fields=["state", "active", "finished_at", "error", "verified_state"])
    event(
        workflow.pk,
        "target-cancelled-at-wait",
        f"{server.serial}: {step.name} stopped without the person it waited for; left "
        f"{server.lifecycle_state}, flagged for maintenance",
        step=step,
        target=target,
        actor=ctx.actor.username,
    )
    return target
