"""The step runner. The database is the source of truth; Celery messages are hints.

run_steps: claim (compare-and-set READY/WAITING → RUNNING with a lease, committed), then act and
finish in a second transaction that re-checks the lease under the row lock. A worker killed
between the two leaves a RUNNING step whose lease expires; nothing of its work committed, so the
reconciler hands it back (``recover_expired_leases``). A live worker's leases are kept by its
process's heartbeat (``provisioning.leases``), so the lease can be short. Every follow-up is
queued on commit; a server whose last step finished hints its workflow's advance
(``provisioning.rollout``).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections import defaultdict
from collections.abc import Callable, Iterable

import structlog
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from factory.agents.models import AgentCommand
from factory.core.bulk import update_rows
from factory.inventory import lifecycle
from factory.inventory.models import UltraServer
from factory.inventory.services import transition
from provisioning import leases, rollout, waits
from provisioning.attribution import workflow_ctx
from provisioning.choices import (
    HOLD_RISKY_BATCH,
    RESTORE_STEPS,
    RISKY_STEPS,
    StepState,
    TargetState,
    WorkflowState,
)
from provisioning.history import event
from provisioning.models import Step, Workflow, WorkflowEvent, WorkflowTarget
from provisioning.outcomes import Done, Fail, Outcome, Wait
from provisioning.queue import queue_advance, queue_step
from provisioning.workflows import definition_for
from provisioning.workflows.base import StepRun
from tenants.access import SYSTEM
from tenants.choices import AuditSource
from tenants.services.changes import ChangeContext

logger = structlog.get_logger(__name__)
MAX_LOST_LEASES = 3
#: For engine changes that no workflow caused; a workflow's changes use ``workflow_ctx``.
ENGINE_CTX = ChangeContext(actor=SYSTEM, source=AuditSource.SYSTEM)

#: The failed state of each in-progress lifecycle state.
FAILED_STATE = {
    lifecycle.INSTALLING: lifecycle.INSTALL_FAILED,
    lifecycle.BURN_IN: lifecycle.BURN_IN_FAILED,
    lifecycle.UPGRADING: lifecycle.UPGRADE_FAILED,
    lifecycle.DRAINING: lifecycle.DRAIN_FAILED,
    lifecycle.MAINTENANCE: lifecycle.MAINTENANCE_FAILED,
}


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


DUE_WORKFLOW_STATES = (WorkflowState.RUNNING, WorkflowState.PAUSED, WorkflowState.CANCELLING)
#: The step columns a run may change; written for the whole batch in one statement.
STEP_FIELDS = [
    "state",
    "attempt",
    "lease_owner",
    "lease_expires_at",
    "next_check_at",
    "deadline_at",
    "external_ref",
    "input",
    "output",
    "error",
    "started_at",
    "finished_at",
]


def claim_steps(step_ids: Iterable[int], owner: str) -> list[int]:
    """Compare-and-set due steps to RUNNING under a lease, committed at once. Skipped: steps
    not due, whose workflow is not running, or that another worker has (or is claiming)."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            Step.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                Q(next_check_at__isnull=True) | Q(next_check_at__lte=now),
                pk__in=list(step_ids),
                state__in=(StepState.READY, StepState.WAITING),
                workflow__state__in=DUE_WORKFLOW_STATES,
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if ids:
            Step.objects.filter(pk__in=ids).update(
                state=StepState.RUNNING,
                attempt=Greatest(F("attempt"), 1),
                lease_owner=owner,
                lease_expires_at=now + dt.timedelta(seconds=leases.lease_seconds()),
                started_at=Coalesce(F("started_at"), Value(now)),
            )
    return ids


def run_step(step_id: int, owner: str | None = None) -> str:
    """Claim, act, finish. Safe to call any number of times for the same step."""
    return run_steps([step_id], owner).get(step_id, "not-due")


def run_steps(step_ids: Iterable[int], owner: str | None = None) -> dict[int, str]:
    """Claim the due ones of ``step_ids``, then act and finish them in one transaction, each
    server's following steps too as far as they go without waiting. Safe to call any number of
    times. If one step's handler breaks the shared transaction, each claimed step runs again
    alone, so one bad step cannot hold back its batch-mates."""
    owner = owner or worker_name()
    claimed = claim_steps(step_ids, owner)
    if not claimed:
        return {}
    leases.running(claimed, owner)  # the process's heartbeat keeps them while unlocked
    try:
        return _run_claimed(claimed, owner)
    finally:
        leases.done(claimed)


def _run_claimed(claimed: list[int], owner: str) -> dict[int, str]:
    try:
        with transaction.atomic():
            return _StepBatch(claimed, owner).run()
    except Exception:
        if len(claimed) == 1:
            raise
        logger.warning("a step broke its batch; running each alone", steps=claimed)
        # The batch held their rows (the heartbeat skipped them): their leases may have run out
        # while it ran. Renewed now, before they wait unlocked for their turn.
        leases.renew(claimed, owner)
    results: dict[int, str] = {}
    for step_id in claimed:
        try:
            with transaction.atomic():
                results.update(_StepBatch([step_id], owner).run())
        except Exception:  # its lease expires and the reconciler hands it back
            logger.exception("step raised; its lease will expire", step=step_id)
            results[step_id] = "error"
        leases.done([step_id])  # no longer kept alive: it failed, or finished
    return results


class _StepBatch:
    """One transaction over claimed steps: every row they need is read in a few statements
    (steps and their siblings, servers locked, awaited commands), the handlers run, and the
    step rows and history are written in bulk at the end. A step that finishes hands over to
    its server's next step in the same pass, so a hardware step's result and the next
    command's submission share one commit. The failure path writes what is pending first and
    then goes the plain way (it is rare, and it reads the database)."""

    def __init__(self, step_ids: list[int], owner: str) -> None:
        self.step_ids, self.owner = step_ids, owner
        self.now = timezone.now()
        self.dirty: dict[int, Step] = {}
        self.events: list[WorkflowEvent] = []
        self.advance: set[int] = set()
        self.results: dict[int, str] = {}
        self.siblings: dict[int | None, list[Step]] = defaultdict(list)  # by target, in order
        self.servers: dict[int, UltraServer] = {}  # locked
        self.commands: dict[str, AgentCommand] = {}
        #: Each workflow's (state, spec, current batch), read once a batch for ``_held``.
        self.hold_state: dict[int, tuple[str, dict, int]] = {}

    def run(self) -> dict[int, str]:
        steps = list(
            Step.objects.select_for_update(of=("self",))
            .select_related("workflow__site", "target")
            .filter(pk__in=self.step_ids)
            .order_by("pk")
        )
        mine = []
        for step in steps:
            if step.state == StepState.RUNNING and step.lease_owner == self.owner:
                mine.append(step)
            else:
                self.results[step.pk] = "lease-lost"
        if not mine:
            return self.results
        by_pk = {step.pk: step for step in mine}
        target_ids = {step.target_id for step in mine if step.target_id}
        for sibling in Step.objects.filter(target_id__in=target_ids).order_by("target_id", "seq"):
            self.siblings[sibling.target_id].append(by_pk.get(sibling.pk, sibling))
        server_ids = sorted({step.target.ultraserver_id for step in mine if step.target})
        self.servers = {
            server.pk: server
            for server in UltraServer.objects.select_for_update(of=("self",))
            .select_related("model", "rack__site")
            .filter(pk__in=server_ids)
            .order_by("pk")
        }
        refs = [step.external_ref for step in mine if step.external_ref]
        self.commands = {str(c.pk): c for c in AgentCommand.objects.filter(pk__in=refs)}
        for step in mine:
            self._run_chain(step)
        self.flush()
        for workflow_id in self.advance:
            queue_advance(workflow_id)
        return self.results

    def _run_chain(self, step: Step) -> None:
        first = step.pk
        current: Step | None = step
        while current is not None:
            outcome = self._run_one(current)
            self.results.setdefault(first, type(outcome).__name__.lower())
            current = self._following(current) if isinstance(outcome, Done) else None

    def _next_pending(self, step: Step) -> Step | None:
        return next(
            (
                s
                for s in self.siblings.get(step.target_id, ())
                if s.seq > step.seq and s.state == StepState.PENDING
            ),
            None,
        )

    def _following(self, step: Step) -> Step | None:
        """The server's next pending step, now running under this batch's lease."""
        following = self._next_pending(step)
        if following is None:
            return None
        following.workflow, following.target = step.workflow, step.target
        following.state = StepState.RUNNING
        following.attempt = max(following.attempt, 1)
        following.started_at = following.started_at or self.now
        self.dirty[following.pk] = following
        return following

    def _run_one(self, step: Step) -> Outcome:
        workflow, target = step.workflow, step.target
        server = self.servers.get(target.ultraserver_id) if target else None
        definition = definition_for(workflow.kind)
        run = StepRun(
            step,
            workflow,
            target,
            server,
            workflow_ctx(workflow),
            self.now,
            server_locked=server is not None,
            commands=self.commands,
            siblings=self.siblings.get(step.target_id, []),
        )
        held = self._held(step)
        if isinstance(held, Done):  # cancelled while held: on to the step that puts it back
            return held
        if held is not None:  # before its deadline starts: a held step has not started
            self._apply(step, held, run)
            return held
        if step.deadline_at is None:
            timeout = definition.step(step.name).timeout_seconds
            if timeout:
                step.deadline_at = run.now + dt.timedelta(seconds=timeout)
        if step.deadline_at and run.now > step.deadline_at:
            outcome: Outcome = Fail(
                f"step {step.name} passed its deadline {step.deadline_at:%H:%M:%S}Z"
            )
        else:
            try:
                outcome = definition.step(step.name).run(run)
            except lifecycle.InvalidTransition as exc:
                outcome = Fail(str(exc))
        if run.server is not None:
            self.servers[run.server.pk] = run.server
        for kind, message in run.events:
            self._event(step, kind, message)
        person = isinstance(outcome, Wait) and waits.waits_for_person(workflow, step.name)
        if person:  # escalated once it waited too long for a person; it keeps waiting
            serial = server.serial if server is not None else f"workflow #{workflow.pk}"
            escalated = waits.escalate_if_overdue(step, workflow, run.now, serial)
            if escalated is not None:
                self._event(step, *escalated)
        self._apply(step, outcome, run)
        if person and step.next_check_at is not None:
            step.next_check_at = waits.next_check(step, workflow, run.now, step.next_check_at)
        if person and workflow.state == WorkflowState.CANCELLING and target is not None:
            # cancelled while this step ran (the cancel stops only the steps it saw waiting)
            self.flush()
            waits.stop_target(workflow, step, run.ctx, workflow.state_reason or "cancelled")
            self.advance.add(workflow.pk)
        return outcome

    def _held(self, step: Step) -> Outcome | None:
        """A risky step not yet started waits while its batch is stopped (the failure budget
        was reached, or the batch was aborted: ``rollout.hold_batch``). The workflow's state is
        read once a batch, and again after a failure in it: that may just have paused it.
        Cancelled while held, the server is put back instead (``_put_back``)."""
        if (
            step.name not in RISKY_STEPS
            or step.external_ref
            or step.input.get("compensation")
            or step.input.get("retried_by")
        ):
            return None
        if step.workflow_id not in self.hold_state:
            self.hold_state[step.workflow_id] = (
                Workflow.objects.filter(pk=step.workflow_id)
                .values_list("state", "spec", "current_batch")
                .get()
            )
        state, spec, batch = self.hold_state[step.workflow_id]
        target_batch = step.target.batch if step.target is not None else None
        held_batch = spec.get(HOLD_RISKY_BATCH)
        if state == WorkflowState.CANCELLING and held_batch == batch == target_batch:
            return self._put_back(step)
        if state != WorkflowState.PAUSED or held_batch != batch or target_batch != batch:
            step.output.pop("held", None)
            return None
        if "held" not in step.output:
            step.output["held"] = True
            self._event(step, "step-held", f"{step.name} held, not started: the batch is stopped")
        return Wait(float(spec.get("poll_seconds", 30.0)), f"{step.name} held")

    def _put_back(self, step: Step) -> Done:
        """Cancelled while held: this step and the server's others skipped, but for its
        restore step, which runs next in this chain and puts the server back (the engine then
        marks it skipped); with no restore step the target is skipped now."""
        marker = {"skipped_by": "cancel"}
        for sibling in self.siblings.get(step.target_id, ()):
            if sibling.pk == step.pk or (
                sibling.seq > step.seq
                and sibling.state == StepState.PENDING
                and sibling.name not in RESTORE_STEPS
            ):
                sibling.state, sibling.finished_at = StepState.SKIPPED, self.now
                sibling.lease_owner, sibling.lease_expires_at = "", None
                sibling.output = {**sibling.output, **marker}
                self.dirty[sibling.pk] = sibling
        self._event(step, "step-skipped", f"{step.name} not started: cancelled while held")
        if self._next_pending(step) is None and step.target is not None:
            _finish_target(step.target, TargetState.SKIPPED, "cancelled", record=self._record)
            self.advance.add(step.workflow_id)
        return Done({}, "put back")

    def _record(
        self,
        workflow_id: int,
        kind: str,
        message: str,
        *,
        step: Step | None = None,
        target: WorkflowTarget | None = None,
    ) -> None:
        """``event``, written with the batch's other rows at the flush."""
        self.events.append(
            WorkflowEvent(
                workflow_id=workflow_id,
                step=step,
                target=target,
                kind=kind,
                message=message[:1000],
                actor="engine",
            )
        )

    def _event(self, step: Step, kind: str, message: str) -> None:
        self._record(step.workflow_id, kind, message, step=step, target=step.target)

    def _apply(self, step: Step, outcome: Outcome, run: StepRun) -> None:
        step.lease_owner, step.lease_expires_at = "", None
        self.dirty[step.pk] = step
        if isinstance(outcome, Wait):
            step.state = StepState.WAITING
            step.next_check_at = self.now + dt.timedelta(seconds=outcome.seconds)
            if outcome.external_ref is not None:
                step.external_ref = outcome.external_ref
                self._event(step, "submitted", outcome.message)
            return
        step.finished_at = self.now
        step.next_check_at = None
        if isinstance(outcome, Done):
            step.state = StepState.SUCCEEDED
            step.output = {**step.output, **outcome.output}
            self._event(step, "step-succeeded", outcome.message or f"{step.name} succeeded")
            target = step.target
            if target is not None and self._next_pending(step) is None:
                siblings = self.siblings.get(step.target_id, ())
                compensated = any(
                    s.state == StepState.FAILED or s.input.get("aborted") for s in siblings
                )
                state = TargetState.ROLLED_BACK if compensated else TargetState.SUCCEEDED
                if not compensated and any(s.output.get("skipped_by") for s in siblings):
                    state = TargetState.SKIPPED  # an operator skipped it; it is put back
                _finish_target(target, state, "", record=self._record)
                self.advance.add(step.workflow_id)
            return
        step.state = StepState.FAILED
        step.error = outcome.error[:1000]
        self._event(step, "step-failed", f"{step.name} failed: {outcome.error}")
        self.flush()  # the failure path reads and writes the database directly
        _after_step_failed(step, step.workflow, step.target, outcome, run)
        self.hold_state.pop(step.workflow_id, None)  # the failure may have stopped the batch

    def flush(self) -> None:
        if self.dirty:
            update_rows(Step, list(self.dirty.values()), STEP_FIELDS)
            self.dirty.clear()
        if self.events:
            WorkflowEvent.objects.bulk_create(self.events)
            self.events.clear()


def _after_step_failed(
    step: Step, workflow: Workflow, target: WorkflowTarget | None, outcome: Fail, run: StepRun
) -> None:
    if target is None:
        return
    definition = definition_for(workflow.kind)
    already_compensating = step.input.get("compensation", False)
    remedies = [] if already_compensating else definition.compensation(run, outcome)
    Step.objects.filter(target=target, state=StepState.PENDING).update(state=StepState.SKIPPED)
    if remedies:
        last_seq = step.seq + 100
        created = Step.objects.bulk_create(
            Step(
                workflow=workflow,
                target=target,
                seq=last_seq + i,
                name=spec.name,
                input={**spec.input, "compensation": True},
                state=StepState.READY if i == 0 else StepState.PENDING,
                max_attempts=definition.step(spec.name).max_attempts,
            )
            for i, spec in enumerate(remedies)
        )
        serial = run.server.serial if run.server else f"server {target.ultraserver_id}"
        event(
            workflow.pk,
            "compensating",
            f"{serial}: {', '.join(s.name for s in remedies)} after: {outcome.error}",
            target=target,
        )
        target.error = outcome.error[:1000]
        target.save(update_fields=["error"])
        queue_step(created[0].pk)
        rollout.hold_for_budget(workflow.pk)
        return
    verified = outcome.verified_state
    if verified is None:
        verified = _first_verified_state(target)
    _mark_server_failed(target.ultraserver_id, outcome.error, run.ctx)
    target.verified_state = verified
    _finish_target(target, TargetState.FAILED, outcome.error)
    rollout.hold_for_budget(workflow.pk)
    queue_advance(workflow.pk)


def _first_verified_state(target: WorkflowTarget) -> dict:
    """A failure outside hardware (a refusal, a deadline): the server's recorded state is the
    truth there, read now."""
    server = UltraServer.objects.get(pk=target.ultraserver_id)
    return {
        "source": "control-plane record",
        "lifecycle_state": server.lifecycle_state,
        "firmware_version": server.firmware_version,
    }


def _mark_server_failed(server_id: int, error: str, ctx: ChangeContext = ENGINE_CTX) -> None:
    server = UltraServer.objects.get(pk=server_id)
    failed = FAILED_STATE.get(server.lifecycle_state)
    fields = {"in_maintenance": True, "fault_reason": error[:500]}
    if failed:
        transition(server_id, failed, ctx, fields=fields)
    else:
        transition(server_id, server.lifecycle_state, ctx, fields=fields)


def _finish_target(
    target: WorkflowTarget,
    state: str,
    error: str,
    *,
    record: Callable[..., None] | None = None,
) -> None:
    """``record`` (default: write now) takes the history event, so a batch keeps its order."""
    target.state = state
    target.active = False
    target.finished_at = timezone.now()
    target.error = (error or target.error)[:1000]
    target.save(update_fields=["state", "active", "finished_at", "error", "verified_state"])
    (record or event)(
        target.workflow_id,
        f"target-{state}",
        f"server {target.ultraserver_id}: {state}",
        target=target,
    )


# --- Recovery ------------------------------------------------------------------------------


def recover_expired_leases(now: dt.datetime | None = None) -> int:
    """A RUNNING step past its lease lost its worker mid-step. Its work did not commit (act and
    finish share one transaction), so it is handed back; the handler re-reads the real state."""
    now = now or timezone.now()
    recovered = 0
    for step_id in Step.objects.filter(
        state=StepState.RUNNING, lease_expires_at__lt=now
    ).values_list("pk", flat=True)[:1000]:
        with transaction.atomic():
            step = (
                Step.objects.select_for_update(skip_locked=True)
                .filter(pk=step_id, state=StepState.RUNNING, lease_expires_at__lt=now)
                .first()
            )
            if step is None:
                continue
            lost = step.output.get("lost_leases", 0) + 1
            step.output["lost_leases"] = lost
            owner = step.lease_owner
            step.lease_owner, step.lease_expires_at = "", None
            if lost > MAX_LOST_LEASES:
                step.state = StepState.FAILED
                step.error = f"lost its worker {lost} times (last {owner}); giving up"
                step.finished_at = now
                step.save()
                workflow = Workflow.objects.get(pk=step.workflow_id)
                target = step.target
                server = UltraServer.objects.get(pk=target.ultraserver_id) if target else None
                run = StepRun(step, workflow, target, server, workflow_ctx(workflow), now)
                _after_step_failed(step, workflow, target, Fail(step.error), run)
            else:
                step.state = StepState.WAITING
                step.next_check_at = now
                step.save()
                event(
                    step.workflow_id,
                    "lease-expired",
                    f"{step.name}: worker {owner} vanished mid-step; nothing it did committed; "
                    "handed back",
                    step=step,
                    target=step.target,
                )
                queue_step(step.pk)
            recovered += 1
    return recovered
