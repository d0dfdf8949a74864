"""A workflow's append-only history: one ``WorkflowEvent`` per thing that happened.

Its creation and every change of its state are also the customers' events
(``workflow.created``, ``workflow.state_changed``): ``created`` and ``set_state`` are the one
place each is written, in the caller's transaction, beside the history entry.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone

from provisioning.choices import FINISHED_WORKFLOW_STATES
from provisioning.models import Step, Workflow, WorkflowEvent, WorkflowTarget
from tenants.events.kinds import EventKind
from tenants.events.services import emit


def event(
    workflow_id: int,
    kind: str,
    message: str,
    *,
    step: Step | None = None,
    target: WorkflowTarget | None = None,
    actor: str = "engine",
) -> None:
    """Write one history event now (a step batch collects its own and writes them in bulk)."""
    WorkflowEvent.objects.create(
        workflow_id=workflow_id,
        step=step,
        target=target,
        kind=kind,
        message=message[:1000],
        actor=actor,
    )


def created(workflow: Workflow, message: str, *, targets: int, actor: str) -> None:
    """A new workflow: its first history entry and the tenant's ``workflow.created``."""
    event(workflow.pk, "created", message, actor=actor)
    emit(
        EventKind.WORKFLOW_CREATED,
        workflow,
        tenant=workflow.site.tenant_id,
        data={
            "workflow_kind": workflow.kind,
            "state": workflow.state,
            "site": workflow.site.code,
            "targets": targets,
            "reason": workflow.reason,
            "created_by": workflow.created_by,
        },
    )


def set_state(
    workflow: Workflow,
    state: str,
    *,
    reason: str | None = None,
    kind: str | None = None,
    message: str | None = None,
    actor: str = "engine",
    fields: Iterable[str] = (),
) -> None:
    """The one place a workflow's state is written. ``workflow`` is the caller's locked row;
    saved with the ``fields`` the caller changed beside it, ``state_reason`` set when
    ``reason`` is given, ``finished_at`` when it finishes. Writes the history entry (``kind``,
    default ``workflow-<state>``; ``message``, default the reason) and the tenant's
    ``workflow.state_changed``."""
    previous = workflow.state
    workflow.state = state
    update = ["state", *fields]
    if reason is not None:
        workflow.state_reason = reason[:1000]
        update.append("state_reason")
    if state in FINISHED_WORKFLOW_STATES:
        workflow.finished_at = timezone.now()
        update.append("finished_at")
    workflow.save(update_fields=[*dict.fromkeys([*update, "updated_at"])])
    event(
        workflow.pk,
        kind or f"workflow-{state}",
        message if message is not None else (reason or state),
        actor=actor,
    )
    if state != previous:
        emit(
            EventKind.WORKFLOW_STATE_CHANGED,
            workflow,
            tenant=workflow.site.tenant_id,
            data={
                "from": previous,
                "to": state,
                "workflow_kind": workflow.kind,
                "reason": workflow.state_reason,
            },
        )
