"""A workflow's append-only history: one ``WorkflowEvent`` per thing that happened."""

from __future__ import annotations

from provisioning.models import Step, WorkflowEvent, WorkflowTarget


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
