"""What an operator does to one server of a workflow, or to the batch in flight, on a bad day.

Retry, skip and force-release act on one target; abort-batch stops the batch in flight and rolls
back the servers whose firmware it changed. Each needs a reason, steers the workflow under its
row lock (the request's ``If-Match`` is checked there, as for pause and cancel), and leaves a
history event (actor and reason) and an audit event naming the server, so the server's own
history lists it. The views (API and console) only call these:

- ``POST /api/v1/workflows/{id}/targets/{target_id}/retry/ | skip/ | force-release/`` with
  ``{"reason": ...}`` (``target_id``: the target's id as ``targets/`` lists it; answered with
  the target), and ``POST /api/v1/workflows/{id}/abort-batch/`` (answered with the workflow
  and its ETag). Provider admins only; ``If-Match`` honoured (412).
- Console: ``/console/workflows/<pk>/targets/<target_id>/<verb>/`` and ``.../abort-batch/``.

The failure budget's own stop (``rollout.hold_for_budget``) and an abort share one mechanism:
the paused workflow names its held batch (``HOLD_RISKY_BATCH``), and the engine does not start
that batch's risky steps (``runner._StepBatch._held``) until it resumes; cancelled meanwhile,
each held server is put back by its restore step and skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from factory.inventory import lifecycle
from factory.inventory.models import UltraServer
from factory.inventory.services import transition
from factory.wire import HardwareState
from provisioning import rollout
from provisioning.attribution import record_workflow_action
from provisioning.choices import (
    FINISHED_STEP_STATES,
    RESTORE_STEPS,
    RISKY_STEPS,
    StepState,
    TargetState,
    WorkflowKind,
    WorkflowState,
)
from provisioning.history import event
from provisioning.models import Step, Workflow, WorkflowTarget
from provisioning.queue import queue_advance, queue_steps
from provisioning.runner import FAILED_STATE
from provisioning.workflows import definition_for
from tenants.errors import Conflict, NotFound, required_text
from tenants.services.changes import ChangeContext, check_preconditions

#: The in-progress state a failed server goes back to when its failed step is retried.
RETRY_STATE = {failed: doing for doing, failed in FAILED_STATE.items()}
#: Workflow states in which its servers may be steered one by one.
STEERABLE = frozenset({WorkflowState.RUNNING, WorkflowState.PAUSED})
#: How far a retry moves the compensation steps of the failed attempt out of the way
#: (``Step.seq`` is unique per target; a new failure plans its remedies at ``seq + 100``).
RETRY_SEQ_SHIFT = 1000


def _locked(workflow: Workflow) -> Workflow:
    """The workflow's row, locked; the request's ``If-Match`` checked against it now."""
    locked = Workflow.objects.select_for_update().select_related("site").get(pk=workflow.pk)
    check_preconditions(locked)
    return locked


def _steerable(workflow: Workflow, verb: str) -> None:
    if workflow.state not in STEERABLE:
        raise Conflict(
            f"{workflow.kind} workflow #{workflow.pk} is {workflow.state}: cannot {verb}",
            code=f"workflow_{workflow.state}",
            field="state",
        )


def _target(workflow: Workflow, target_id: int) -> WorkflowTarget:
    target = (
        WorkflowTarget.objects.select_for_update(of=("self",))
        .select_related("ultraserver")
        .filter(workflow=workflow, pk=target_id)
        .first()
    )
    if target is None:
        raise NotFound(
            f"workflow #{workflow.pk} has no target {target_id}",
            code="target_not_found",
            field="target_id",
        )
    return target


def _wrong_state(target: WorkflowTarget, verb: str, allowed: Iterable[str]) -> Conflict:
    return Conflict(
        f"{target.ultraserver.serial} is {target.state} in workflow #{target.workflow_id}: "
        f"cannot {verb} (only when {', '.join(sorted(allowed))})",
        code=f"target_{target.state.replace('-', '_')}",
        field="state",
    )


def _record(
    workflow: Workflow,
    target: WorkflowTarget | None,
    verb: str,
    reason: str,
    ctx: ChangeContext,
    message: str,
    servers: Iterable[int],
    **detail: Any,
) -> None:
    """The history event (actor, reason) and the audit event naming the servers."""
    event(
        workflow.pk,
        verb,
        f"{message}: {reason}",
        target=target,
        actor=ctx.actor.username,
    )
    record_workflow_action(workflow, verb, ctx, reason=reason, servers=list(servers), **detail)


def _at_rest(target: WorkflowTarget) -> dict:
    """The server's recorded state, read now, as the target's verified resting state."""
    server = UltraServer.objects.get(pk=target.ultraserver_id)
    return {
        "source": "control-plane record",
        "lifecycle_state": server.lifecycle_state,
        "firmware_version": server.firmware_version,
        "in_maintenance": server.in_maintenance,
    }


def _in_flight(target: WorkflowTarget) -> list[Step]:
    """Steps of ``target`` working right now: leased, or waiting on a command sent."""
    return [
        s
        for s in target.steps.all()
        if s.state == StepState.RUNNING or (s.state == StepState.WAITING and s.external_ref)
    ]


# --- One server ---------------------------------------------------------------------------


def retry_target(
    workflow: Workflow, target_id: int, reason: str, ctx: ChangeContext
) -> WorkflowTarget:
    """A failed server's failed step runs again, from the step's start (a hardware step reads
    the real state before it repeats anything): the server goes back to the in-progress state
    it failed in, its hold is taken again, the steps after it are planned again. Not for a
    rolled-back server: it is back where it started (start a new workflow for it)."""
    reason = required_text(reason)
    with transaction.atomic():
        wf = _locked(workflow)
        _steerable(wf, "retry a server")
        target = _target(wf, target_id)
        if target.state != TargetState.FAILED:
            raise _wrong_state(target, "retry", [TargetState.FAILED])
        steps = list(target.steps.select_for_update().order_by("seq"))
        failed = next(
            (
                s
                for s in reversed(steps)
                if s.state == StepState.FAILED and not s.input.get("compensation")
            ),
            None,
        )
        if failed is None:
            raise Conflict(
                f"{target.ultraserver.serial} has no failed step to retry",
                code="no_failed_step",
                field="state",
            )
        server = target.ultraserver
        resume_in = RETRY_STATE.get(server.lifecycle_state, server.lifecycle_state)
        fault = server.fault_reason
        fields: dict[str, object] = {}
        if server.in_maintenance and fault and fault == target.error[:500]:
            fields = {"in_maintenance": False, "fault_reason": ""}  # the failure's own flag
        transition(server.pk, resume_in, ctx, fields=fields)
        retries = int(failed.input.get("retries", 0)) + 1
        for step in steps:
            if step.input.get("compensation"):  # the failed attempt's remedies: kept, moved
                step.seq += RETRY_SEQ_SHIFT * retries
            elif step.seq > failed.seq and step.state == StepState.SKIPPED:
                step.state, step.finished_at = StepState.PENDING, None
        for step in sorted(steps, key=lambda s: -s.seq):  # highest first: seq stays unique
            step.save(update_fields=["seq", "state", "finished_at"])
        failed.state = StepState.READY
        failed.attempt, failed.external_ref, failed.error = 0, "", ""
        failed.output, failed.next_check_at, failed.deadline_at = {}, None, None
        failed.started_at = failed.finished_at = None
        failed.input = {**failed.input, "retries": retries, "retried_by": ctx.actor.username}
        failed.save()
        target.state, target.error, target.finished_at = TargetState.RUNNING, "", None
        target.active, target.verified_state = True, None
        try:
            with transaction.atomic():
                target.save(
                    update_fields=["state", "error", "finished_at", "active", "verified_state"]
                )
        except IntegrityError as exc:
            raise Conflict(
                f"{server.serial} is held by another workflow now: cannot retry it here",
                code="held_by_workflow",
                field="target_id",
            ) from exc
        _record(
            wf,
            target,
            "retry",
            reason,
            ctx,
            f"{server.serial}: {failed.name} retried by {ctx.actor.username}",
            [server.pk],
            step=failed.name,
        )
        queue_steps([failed.pk])
    return target


def skip_target(
    workflow: Workflow, target_id: int, reason: str, ctx: ChangeContext
) -> WorkflowTarget:
    """Leave a server out: not started yet, failed (its real state was verified then), or
    stopped between steps. A server stopped between steps but taken out (drained, held before
    its flash) is put back first by its own restore step, then marked skipped. A server with a
    command out is refused (wait for it, or force-release it if it is stuck). The server is
    released with its recorded state kept as verified."""
    reason = required_text(reason)
    with transaction.atomic():
        wf = _locked(workflow)
        _steerable(wf, "skip a server")
        target = _target(wf, target_id)
        allowed = (TargetState.PENDING, TargetState.RUNNING, TargetState.FAILED)
        if target.state not in allowed:
            raise _wrong_state(target, "skip", allowed)
        server = target.ultraserver
        now = timezone.now()
        unfinished = target.steps.exclude(state__in=FINISHED_STEP_STATES)
        message = f"{server.serial}: skipped by {ctx.actor.username}"
        restore = None
        if target.state == TargetState.RUNNING:
            if _in_flight(target):
                raise Conflict(
                    f"{server.serial} has a command out ({_in_flight(target)[0].name}): "
                    "not at rest, cannot skip it now (wait for it, or force-release it if "
                    "it is stuck)",
                    code="target_in_flight",
                    field="state",
                )
            if server.lifecycle_state in lifecycle.IN_PROGRESS:
                restore = unfinished.filter(name__in=RESTORE_STEPS).order_by("seq").first()
                if restore is None:
                    raise Conflict(
                        f"{server.serial} is {server.lifecycle_state} with no step left to "
                        "put it back: force-release it instead",
                        code="target_in_flight",
                        field="state",
                    )
        marker = {"skipped_by": ctx.actor.username}
        for step in unfinished.exclude(pk=restore.pk) if restore else unfinished:
            step.state, step.finished_at, step.next_check_at = StepState.SKIPPED, now, None
            step.output = {**step.output, **marker}
            step.save(update_fields=["state", "finished_at", "next_check_at", "output"])
        if restore is not None:  # the server goes back first; the engine marks it skipped
            restore.state, restore.next_check_at = StepState.READY, None
            restore.save(update_fields=["state", "next_check_at"])
            message += f"; {restore.name} puts it back first"
            queue_steps([restore.pk])
        else:
            if target.verified_state is None or target.state != TargetState.FAILED:
                target.verified_state = _at_rest(target)
            target.state, target.active, target.finished_at = TargetState.SKIPPED, False, now
            target.error = f"skipped by {ctx.actor.username}: {reason}"[:1000]
            target.save(update_fields=["state", "active", "finished_at", "error", "verified_state"])
            queue_advance(wf.pk)
        _record(wf, target, "skip", reason, ctx, message, [server.pk])
    return target


def force_release(
    workflow: Workflow, target_id: int, reason: str, ctx: ChangeContext
) -> WorkflowTarget:
    """Release a stuck hold: the target stops (its unfinished steps skipped, a command out is
    no longer awaited), its hold is gone, and the server is flagged for maintenance with why,
    so nothing assumes it is fine. Its state is unverified and says so; it counts as failed."""
    reason = required_text(reason)
    with transaction.atomic():
        wf = _locked(workflow)
        if wf.state not in (*STEERABLE, WorkflowState.CANCELLING):
            _steerable(wf, "force-release a server")
        target = _target(wf, target_id)
        if not target.active:
            raise Conflict(
                f"{target.ultraserver.serial} is {target.state} and holds nothing: "
                "nothing to release",
                code=f"target_{target.state.replace('-', '_')}",
                field="state",
            )
        server = target.ultraserver
        now = timezone.now()
        target.steps.exclude(state__in=FINISHED_STEP_STATES).update(
            state=StepState.SKIPPED,
            finished_at=now,
            next_check_at=None,
            lease_owner="",
            lease_expires_at=None,
        )
        flag = f"force-released from workflow #{wf.pk} by {ctx.actor.username}: {reason}"
        transition(
            server.pk,
            server.lifecycle_state,
            ctx,
            fields={"in_maintenance": True, "fault_reason": flag[:500]},
        )
        target.verified_state = {**_at_rest(target), "source": "not verified: force-released"}
        target.state, target.active, target.finished_at = TargetState.FAILED, False, now
        target.error = flag[:1000]
        target.save(update_fields=["state", "active", "finished_at", "error", "verified_state"])
        _record(
            wf,
            target,
            "force-release",
            reason,
            ctx,
            f"{server.serial}: hold force-released by {ctx.actor.username}, flagged for "
            "maintenance",
            [server.pk],
        )
        queue_advance(wf.pk)
    return target


# --- The batch in flight --------------------------------------------------------------------


def _rollback_plan(target: WorkflowTarget, steps: list[Step]) -> list[tuple[str, dict]] | None:
    """The upgrade's own rollback for a server whose new firmware is flashed: boot the other
    bank (which holds the version it ran before), then put it back; drained first when it
    was already back in service. ``None``: its flash did not take (nothing to roll back);
    ``[]``: no bank holds the old version (it cannot be rolled back)."""
    flash = next((s for s in steps if s.name == "flash" and not s.input.get("compensation")), None)
    if flash is None or flash.state != StepState.SUCCEEDED:
        return None
    previous = flash.input.get("from_version")
    banks = flash.output or {}
    if not previous or banks.get(HardwareState.INACTIVE_FIRMWARE_VERSION) != previous:
        return []
    plan: list[tuple[str, dict]] = []
    if target.state == TargetState.SUCCEEDED:
        plan.append(("drain", {}))
    return [*plan, ("rollback", {"version": previous}), ("restore_after_rollback", {})]


def abort_batch(workflow: Workflow, reason: str, ctx: ChangeContext) -> Workflow:
    """Stop the batch in flight: its risky steps not yet started are held (not started), its
    servers whose firmware was flashed are rolled back by the upgrade's own rollback path
    (boot the other bank, put back), and the workflow pauses. Steps mid-command finish; a
    server still flashing is rolled back by a second abort once its flash is done."""
    reason = required_text(reason)
    with transaction.atomic():
        wf = _locked(workflow)
        _steerable(wf, "abort its batch")
        if wf.current_batch < 0:
            raise Conflict(
                f"workflow #{wf.pk} has no batch in flight",
                code="no_batch_in_flight",
                field="current_batch",
            )
        definition = definition_for(wf.kind)
        targets = list(
            WorkflowTarget.objects.select_for_update(of=("self",))
            .select_related("ultraserver")
            .filter(
                workflow=wf,
                batch=wf.current_batch,
                state__in=[TargetState.RUNNING, TargetState.SUCCEEDED],
            )
        )
        rolling: list[str] = []
        unable: list[str] = []
        first_steps: list[int] = []
        now = timezone.now()
        for target in targets:
            steps = list(target.steps.order_by("seq"))
            plan = _rollback_plan(target, steps) if wf.kind == WorkflowKind.UPGRADE else None
            if plan is None or any(s.input.get("aborted") for s in steps):
                continue
            if not plan:
                unable.append(target.ultraserver.serial)
                continue
            busy = [
                s
                for s in _in_flight(target)
                if s.name in RISKY_STEPS or s.state == StepState.RUNNING
            ]
            if busy:  # flashing, or a worker on it now: it finishes; a second abort after
                unable.append(f"{target.ultraserver.serial} (mid-{busy[0].name})")
                continue
            Step.objects.filter(target=target).exclude(state__in=FINISHED_STEP_STATES).update(
                state=StepState.SKIPPED, finished_at=now, next_check_at=None
            )
            base = (target.steps.aggregate(m=Max("seq"))["m"] or 0) + 100
            created = Step.objects.bulk_create(
                Step(
                    workflow=wf,
                    target=target,
                    seq=base + i,
                    name=name,
                    input={**data, "compensation": True, "aborted": True},
                    state=StepState.READY if i == 0 else StepState.PENDING,
                    max_attempts=definition.step(name).max_attempts,
                )
                for i, (name, data) in enumerate(plan)
            )
            first_steps.append(created[0].pk)
            if target.state == TargetState.SUCCEEDED:
                target.state, target.active, target.finished_at = TargetState.RUNNING, True, None
                try:
                    with transaction.atomic():
                        target.save(update_fields=["state", "active", "finished_at"])
                except IntegrityError as exc:
                    raise Conflict(
                        f"{target.ultraserver.serial} is held by another workflow now: its "
                        "rollback cannot be planned here",
                        code="held_by_workflow",
                        field="targets",
                    ) from exc
            rolling.append(target.ultraserver.serial)
        held = sorted(
            set(
                rollout.unstarted_risky_steps(wf).values_list(
                    "target__ultraserver__serial", flat=True
                )
            )
        )
        message = (
            f"batch {wf.current_batch} aborted by {ctx.actor.username}: rolling back "
            f"{', '.join(rolling) or 'none'}; held before their risky steps: "
            f"{', '.join(held) or 'none'}"
            + (f"; not rolled back: {', '.join(unable)}" if unable else "")
        )
        servers = [t.ultraserver_id for t in targets]
        record_workflow_action(
            wf,
            "abort-batch",
            ctx,
            to=WorkflowState.PAUSED,
            reason=reason,
            servers=servers,
            batch=wf.current_batch,
            rolled_back=rolling,
            held=held,
            not_rolled_back=unable,
        )
        rollout.hold_batch(
            wf,
            reason=f"{message}: {reason}"[:1000],
            kind="batch-aborted",
            actor=ctx.actor.username,
        )
        queue_steps(first_steps)
    return wf
