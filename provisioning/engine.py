"""The workflow engine. The database is the source of truth; Celery messages are hints.

run_step: claim (compare-and-set READY/WAITING → RUNNING with a lease, committed), then act and
finish in a second transaction that re-checks the lease under the row lock. A worker killed
between the two leaves a RUNNING step whose lease expires; nothing of its work committed, so the
reconciler hands it back. Every follow-up is queued on commit.

advance: the workflow-level loop: finish, enforce the failure budget, wait out soak and
maintenance windows, run the health gate, and start the next batch within the failure-domain
limits.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections import Counter, defaultdict

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from factory.inventory import lifecycle
from factory.inventory.choices import ChipHealth
from factory.inventory.models import Chip, PowerFeed, UltraServer
from factory.inventory.services import transition
from provisioning.choices import (
    FINISHED_TARGET_STATES,
    FINISHED_WORKFLOW_STATES,
    StepState,
    TargetState,
    WorkflowState,
)
from provisioning.models import MaintenanceWindow, Step, Workflow, WorkflowEvent, WorkflowTarget
from provisioning.outcomes import Done, Fail, Wait
from provisioning.windows import Window, is_open, next_opening
from provisioning.workflows import definition_for
from provisioning.workflows.base import StepRun
from tenants.access import SYSTEM
from tenants.choices import AuditSource
from tenants.services.changes import ChangeContext

logger = structlog.get_logger(__name__)
MAX_LOST_LEASES = 3
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


def event(workflow_id, kind, message, *, step=None, target=None, actor="engine") -> None:
    WorkflowEvent.objects.create(
        workflow_id=workflow_id,
        step=step,
        target=target,
        kind=kind,
        message=message[:1000],
        actor=actor,
    )


def hint(task, *args) -> None:
    """Queue ``task`` after the commit. A lost hint (broker down) is logged, never raised: the
    change is committed and the reconciler finds the due work in the database anyway."""

    def send():
        try:
            task.delay(*args)
        except Exception as exc:  # the broker is a hint channel, not the truth
            logger.warning(
                "hint lost; the reconciler will pick it up",
                task=task.name,
                args=args,
                error=str(exc),
            )

    transaction.on_commit(send)


def _queue_step(step_id: int) -> None:
    from provisioning.tasks import run_step

    hint(run_step, step_id)


def _queue_advance(workflow_id: int) -> None:
    from provisioning.tasks import advance_workflow

    hint(advance_workflow, workflow_id)


# --- Steps ---------------------------------------------------------------------------------


def claim_step(step_id: int, owner: str) -> bool:
    """Compare-and-set a due step to RUNNING under a lease, in one UPDATE. False: not due, its
    workflow is not running, or another worker has it."""
    now = timezone.now()
    return bool(
        Step.objects.filter(
            Q(next_check_at__isnull=True) | Q(next_check_at__lte=now),
            pk=step_id,
            state__in=(StepState.READY, StepState.WAITING),
            workflow__state__in=(
                WorkflowState.RUNNING,
                WorkflowState.PAUSED,
                WorkflowState.CANCELLING,
            ),
        ).update(
            state=StepState.RUNNING,
            attempt=Greatest(F("attempt"), 1),
            lease_owner=owner,
            lease_expires_at=now + dt.timedelta(seconds=settings.WORKFLOW_LEASE_SECONDS),
            started_at=Coalesce(F("started_at"), Value(now)),
        )
    )


def run_step(step_id: int, owner: str | None = None) -> str:
    """Claim, act, finish. Safe to call any number of times for the same step."""
    owner = owner or worker_name()
    if not claim_step(step_id, owner):
        return "not-due"
    with transaction.atomic():
        step = (
            Step.objects.select_for_update(of=("self",))
            .select_related("workflow__site", "target")
            .filter(pk=step_id)
            .first()
        )
        if step is None or step.state != StepState.RUNNING or step.lease_owner != owner:
            return "lease-lost"
        workflow, target = step.workflow, step.target
        server = (
            UltraServer.objects.select_related("model", "rack__site").get(pk=target.ultraserver_id)
            if target
            else None
        )
        definition = definition_for(workflow.kind)
        run = StepRun(step, workflow, target, server, ENGINE_CTX, timezone.now())
        if step.deadline_at is None:
            timeout = definition.step(step.name).timeout_seconds
            if timeout:
                step.deadline_at = run.now + dt.timedelta(seconds=timeout)
        if step.deadline_at and run.now > step.deadline_at:
            outcome = Fail(f"step {step.name} passed its deadline {step.deadline_at:%H:%M:%S}Z")
        else:
            try:
                outcome = definition.step(step.name).run(run)
            except lifecycle.InvalidTransition as exc:
                outcome = Fail(str(exc))
        for kind, message in run.events:
            event(workflow.pk, kind, message, step=step, target=target)
        _apply(step, workflow, target, outcome, run)
    return type(outcome).__name__.lower()


def _apply(step: Step, workflow: Workflow, target, outcome, run: StepRun) -> None:
    now = run.now
    step.lease_owner, step.lease_expires_at = "", None
    fields = [
        "state",
        "lease_owner",
        "lease_expires_at",
        "output",
        "attempt",
        "next_check_at",
        "deadline_at",
    ]
    if isinstance(outcome, Wait):
        step.state = StepState.WAITING
        step.next_check_at = now + dt.timedelta(seconds=outcome.seconds)
        if outcome.external_ref is not None:
            step.external_ref = outcome.external_ref
            fields.append("external_ref")
            event(workflow.pk, "submitted", outcome.message, step=step, target=target)
        step.save(update_fields=fields)
        return
    step.finished_at = now
    step.next_check_at = None
    fields += ["finished_at", "error"]
    if isinstance(outcome, Done):
        step.state = StepState.SUCCEEDED
        step.output = {**step.output, **outcome.output}
        step.save(update_fields=fields)
        event(
            workflow.pk,
            "step-succeeded",
            outcome.message or f"{step.name} succeeded",
            step=step,
            target=target,
        )
        _after_step_succeeded(step, workflow, target)
        return
    step.state = StepState.FAILED
    step.error = outcome.error[:1000]
    step.save(update_fields=fields)
    event(
        workflow.pk, "step-failed", f"{step.name} failed: {outcome.error}", step=step, target=target
    )
    _after_step_failed(step, workflow, target, outcome, run)


def _next_pending(step: Step) -> Step | None:
    return (
        Step.objects.filter(target_id=step.target_id, seq__gt=step.seq, state=StepState.PENDING)
        .order_by("seq")
        .first()
    )


def _after_step_succeeded(step: Step, workflow: Workflow, target) -> None:
    following = _next_pending(step)
    if following is not None:
        following.state = StepState.READY
        following.next_check_at = None
        following.save(update_fields=["state", "next_check_at"])
        _queue_step(following.pk)
        return
    if target is None:
        return
    compensated = Step.objects.filter(target=target, state=StepState.FAILED).exists()
    _finish_target(target, TargetState.ROLLED_BACK if compensated else TargetState.SUCCEEDED, "")
    _queue_advance(workflow.pk)


def _after_step_failed(step, workflow, target, outcome: Fail, run: StepRun) -> None:
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
        event(
            workflow.pk,
            "compensating",
            f"{run.server.serial}: {', '.join(s.name for s in remedies)} after: {outcome.error}",
            target=target,
        )
        target.error = outcome.error[:1000]
        target.save(update_fields=["error"])
        _queue_step(created[0].pk)
        return
    verified = outcome.verified_state
    if verified is None:
        verified = _first_verified_state(target)
    _mark_server_failed(target.ultraserver_id, outcome.error)
    target.verified_state = verified
    _finish_target(target, TargetState.FAILED, outcome.error)
    _queue_advance(workflow.pk)


def _first_verified_state(target) -> dict:
    """A failure outside hardware (a refusal, a deadline): the server's recorded state is the
    truth there, read now."""
    server = UltraServer.objects.get(pk=target.ultraserver_id)
    return {
        "source": "control-plane record",
        "lifecycle_state": server.lifecycle_state,
        "firmware_version": server.firmware_version,
    }


def _mark_server_failed(server_id: int, error: str) -> None:
    server = UltraServer.objects.get(pk=server_id)
    failed = FAILED_STATE.get(server.lifecycle_state)
    fields = {"in_maintenance": True, "fault_reason": error[:500]}
    if failed:
        transition(server_id, failed, ENGINE_CTX, fields=fields)
    else:
        transition(server_id, server.lifecycle_state, ENGINE_CTX, fields=fields)


def _finish_target(target: WorkflowTarget, state: str, error: str) -> None:
    target.state = state
    target.active = False
    target.finished_at = timezone.now()
    target.error = (error or target.error)[:1000]
    target.save(update_fields=["state", "active", "finished_at", "error", "verified_state"])
    event(
        target.workflow_id,
        f"target-{state}",
        f"server {target.ultraserver_id}: {state}",
        target=target,
    )


# --- Workflows -----------------------------------------------------------------------------


def approved_windows(site) -> list[Window]:
    return [
        Window(
            frozenset(w.weekdays),
            w.start_time,
            dt.timedelta(minutes=w.duration_minutes),
            site.time_zone,
        )
        for w in MaintenanceWindow.objects.filter(site=site, status="approved")
    ]


def _set_state(workflow: Workflow, state: str, reason: str, kind: str | None = None) -> None:
    workflow.state = state
    workflow.state_reason = reason[:1000]
    fields = ["state", "state_reason", "updated_at"]
    if state in FINISHED_WORKFLOW_STATES:
        workflow.finished_at = timezone.now()
        fields.append("finished_at")
    workflow.save(update_fields=fields)
    event(workflow.pk, kind or f"workflow-{state}", reason or state)


def advance(workflow_id: int) -> str:
    """Move a workflow on as far as it may go now. Idempotent; called on commit after each
    target finishes and by the reconciler."""
    with transaction.atomic():
        # Blocking, not SKIP LOCKED: an advance that skipped while another held the lock could
        # miss the target that just finished, and the batch would wait for the reconciler.
        workflow = (
            Workflow.objects.select_for_update(of=("self",))
            .select_related("site")
            .filter(pk=workflow_id)
            .first()
        )
        if workflow is None:
            return "gone"
        if workflow.state not in (
            WorkflowState.RUNNING,
            WorkflowState.PAUSED,
            WorkflowState.CANCELLING,
        ):
            return workflow.state
        counts = Counter(
            dict(
                WorkflowTarget.objects.filter(workflow=workflow)
                .values_list("state")
                .annotate(n=Count("id"))
                .values_list("state", "n")
            )
        )
        total = sum(counts.values())
        finished = sum(counts[s] for s in FINISHED_TARGET_STATES)
        failed = counts[TargetState.FAILED] + counts[TargetState.ROLLED_BACK]
        running = counts[TargetState.RUNNING]
        if finished == total:
            if workflow.state == WorkflowState.CANCELLING:
                _set_state(workflow, WorkflowState.CANCELLED, workflow.state_reason or "cancelled")
            elif failed:
                _set_state(
                    workflow,
                    WorkflowState.FAILED,
                    f"{failed} of {total} UltraServers failed (real state verified for each)",
                )
            else:
                _set_state(workflow, WorkflowState.SUCCEEDED, f"all {total} UltraServers done")
            return workflow.state
        if workflow.state != WorkflowState.RUNNING:
            return workflow.state
        spec = workflow.spec
        max_failures = spec.get("max_failures")
        max_pct = spec.get("max_failure_pct")
        base = spec.get("failures_acknowledged", 0)
        if (max_failures is not None and failed - base > max_failures) or (
            max_pct is not None and failed > 0 and 100.0 * (failed - base) / total > max_pct
        ):
            _set_state(
                workflow,
                WorkflowState.PAUSED,
                f"failure budget exceeded: {failed} of {total} failed "
                f"(budget {max_failures} or {max_pct}%); paused itself",
                kind="budget-exceeded",
            )
            return workflow.state
        if running:
            return "in-flight"
        now = timezone.now()
        definition = definition_for(workflow.kind)
        if workflow.current_batch >= 0:
            if workflow.batch_finished_at is None:
                workflow.batch_finished_at = now
                workflow.save(update_fields=["batch_finished_at", "updated_at"])
                gate = health_gate(workflow)
                if gate:
                    _set_state(workflow, WorkflowState.PAUSED, gate, kind="health-gate")
                    return workflow.state
            soak = float(spec.get("soak_seconds", 0))
            if (now - workflow.batch_finished_at).total_seconds() < soak:
                return "soaking"
        if definition.respects_windows(workflow):
            windows = approved_windows(workflow.site)
            if not any(is_open(w, now) for w in windows):
                opening = next_opening(windows, now)
                reason = (
                    "waiting for the site's maintenance window "
                    f"(next opens {opening:%Y-%m-%d %H:%M}Z)"
                    if opening
                    else "waiting: the site has no tenant-approved maintenance window"
                )
                if workflow.state_reason != reason:
                    workflow.state_reason = reason
                    workflow.save(update_fields=["state_reason", "updated_at"])
                    event(workflow.pk, "waiting-window", reason)
                return "waiting-window"
        return _start_batch(workflow, definition, now)


def health_gate(workflow: Workflow) -> str:
    """After a batch: any of its servers with a failed chip, a maintenance flag or no agent
    contact stops the rollout (an empty string means the gate passed)."""
    limit = int(workflow.spec.get("health_gate_max_failed_chips", 0))
    batch = WorkflowTarget.objects.filter(
        workflow=workflow, batch=workflow.current_batch, state=TargetState.SUCCEEDED
    )
    server_ids = list(batch.values_list("ultraserver_id", flat=True))
    failed_chips = Chip.objects.filter(
        ultraserver_id__in=server_ids, health=ChipHealth.FAILED
    ).count()
    unhealthy = list(
        UltraServer.objects.filter(pk__in=server_ids)
        .filter(Q(in_maintenance=True) | Q(unreachable_since__isnull=False))
        .values_list("serial", flat=True)[:5]
    )
    if failed_chips > limit or unhealthy:
        return (
            f"health gate after batch {workflow.current_batch}: {failed_chips} failed chips "
            f"(limit {limit})" + (f", unhealthy: {', '.join(unhealthy)}" if unhealthy else "")
        )
    return ""


def _start_batch(workflow: Workflow, definition, now) -> str:
    size = definition.batch_size(workflow)
    limit = int(workflow.spec.get("max_unavailable_per_domain", 0)) or None
    pending = list(
        WorkflowTarget.objects.filter(workflow=workflow, state=TargetState.PENDING)
        .select_related("ultraserver")
        .order_by("id")
    )
    rack_ids = {t.ultraserver.rack_id for t in pending}
    feeds_by_rack: dict[int, list[int]] = defaultdict(list)
    for feed_id, rack_id in PowerFeed.objects.filter(rack_id__in=rack_ids).values_list(
        "id", "rack_id"
    ):
        feeds_by_rack[rack_id].append(feed_id)
    in_use: Counter = Counter()
    chosen = []
    for target in pending:
        rack_id = target.ultraserver.rack_id
        domains = [f"rack:{rack_id}", *(f"feed:{f}" for f in feeds_by_rack[rack_id])]
        if limit and any(in_use[d] >= limit for d in domains):
            continue
        in_use.update(domains)
        chosen.append(target)
        if len(chosen) >= size:
            break
    if not chosen:
        return "nothing-to-start"
    batch = workflow.current_batch + 1
    for target in chosen:
        target.batch, target.state, target.started_at = batch, TargetState.RUNNING, now
    WorkflowTarget.objects.bulk_update(chosen, ["batch", "state", "started_at"])
    first_steps = list(Step.objects.filter(target__in=chosen, seq=0).values_list("pk", flat=True))
    Step.objects.filter(pk__in=first_steps).update(state=StepState.READY)
    workflow.current_batch = batch
    workflow.batch_finished_at = None
    workflow.state_reason = ""
    workflow.save(
        update_fields=["current_batch", "batch_finished_at", "state_reason", "updated_at"]
    )
    label = "canary batch" if batch == 0 and definition.canary_size(workflow) else f"batch {batch}"
    event(workflow.pk, "batch-started", f"{label}: {len(chosen)} UltraServers")
    for step_id in first_steps:
        _queue_step(step_id)
    return "started"


# --- Recovery ------------------------------------------------------------------------------


def recover_expired_leases(now=None) -> int:
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
                server = UltraServer.objects.get(pk=step.target.ultraserver_id)
                run = StepRun(step, workflow, step.target, server, ENGINE_CTX, now)
                _after_step_failed(step, workflow, step.target, Fail(step.error), run)
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
                _queue_step(step.pk)
            recovered += 1
    return recovered
