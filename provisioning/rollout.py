"""Rollout policy: how a workflow moves on, batch by batch.

advance: finish the workflow when every server is done, enforce the failure budget
(``max_failures`` / ``max_failure_pct``: the rollout pauses itself), run the health gate after
each batch, wait out the soak and the site's maintenance windows, and start the next batch
within the failure-domain limits (``max_unavailable_per_domain`` per rack and per power feed).
The steps themselves run in ``provisioning.runner``; this module only makes them ready and
hints them (``provisioning.queue``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from factory.core.bulk import update_rows
from factory.inventory.choices import ChipHealth
from factory.inventory.models import Chip, PowerFeed, Site, UltraServer
from provisioning import budgets
from provisioning.choices import (
    FINISHED_TARGET_STATES,
    HOLD_RISKY_BATCH,
    RISKY_STEPS,
    StepState,
    TargetState,
    WorkflowState,
)
from provisioning.history import event, set_state
from provisioning.models import MaintenanceWindow, Step, Workflow, WorkflowTarget
from provisioning.placement import lifecycle as unit_lifecycle
from provisioning.queue import queue_advance, queue_steps
from provisioning.windows import Window, describe_opening, is_open, next_opening
from provisioning.workflows import definition_for
from provisioning.workflows.definition import WorkflowDefinition


def approved_windows(site: Site) -> list[Window]:
    """The site's tenant-approved maintenance windows."""
    return [
        Window(
            frozenset(w.weekdays),
            w.start_time,
            dt.timedelta(minutes=w.duration_minutes),
            site.time_zone,
        )
        for w in MaintenanceWindow.objects.filter(site=site, status="approved")
    ]


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
                set_state(
                    workflow, WorkflowState.CANCELLED, reason=workflow.state_reason or "cancelled"
                )
            elif failed:
                set_state(
                    workflow,
                    WorkflowState.FAILED,
                    reason=f"{failed} of {total} UltraServers failed "
                    "(real state verified for each)",
                )
            else:
                done = f"all {total} UltraServers done"
                set_state(workflow, WorkflowState.SUCCEEDED, reason=done)
            return workflow.state
        if workflow.state != WorkflowState.RUNNING:
            return workflow.state
        spec = workflow.spec
        # Counted as the hold and a resume count them (``budgets.failed_targets``): a server
        # whose rollback runs has failed already. The pause is taken while it stops something
        # (servers not started yet); in the last batch the workflow ends failed by itself.
        failures = budgets.failure_count(workflow) if running else failed
        if counts[TargetState.PENDING] and budgets.budget_exceeded(spec, failures, total):
            set_state(
                workflow,
                WorkflowState.PAUSED,
                reason=f"failure budget exceeded: {failures} of {total} failed "
                f"(budget {spec.get('max_failures')} or {spec.get('max_failure_pct')}%); "
                "paused itself",
                kind="budget-exceeded",
            )
            return workflow.state
        if running:
            if failures and _hold_if_reached(workflow, total, in_batch=True):
                return workflow.state  # the hold a busy ``hold_for_budget`` left to us
            return "in-flight"
        now = timezone.now()
        definition = definition_for(workflow.kind)
        if workflow.current_batch >= 0:
            if workflow.batch_finished_at is None:
                workflow.batch_finished_at = now
                workflow.save(update_fields=["batch_finished_at", "updated_at"])
                gate = health_gate(workflow)
                if gate:
                    set_state(workflow, WorkflowState.PAUSED, reason=gate, kind="health-gate")
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
                    f"(next opens {describe_opening(opening, workflow.site.time_zone)})"
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


def _start_batch(workflow: Workflow, definition: WorkflowDefinition, now: dt.datetime) -> str:
    from factory.inventory.models.locking import lock_capacity_scope

    # The site's lock before anything is read (after the workflow's, which advance holds: the
    # order fit_batch and services.start use): two batch starts at one site must not both
    # read the unit budget (units_down) before either has taken its unit.
    lock_capacity_scope(site_ids=[workflow.site_id])
    size = definition.batch_size(workflow)
    limit = int(workflow.spec.get("max_unavailable_per_domain", 0)) or None
    pending = list(
        WorkflowTarget.objects.filter(workflow=workflow, state=TargetState.PENDING)
        .select_related("ultraserver")
        .order_by("id")
    )
    rack_ids = {t.ultraserver.rack_id for t in pending if t.ultraserver.rack_id is not None}
    feeds_by_rack: dict[int | None, list[int]] = defaultdict(list)
    for feed_id, feed_rack_id in PowerFeed.objects.filter(rack_id__in=rack_ids).values_list(
        "id", "rack_id"
    ):
        feeds_by_rack[feed_rack_id].append(feed_id)
    in_use: Counter[str] = Counter()
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
    chosen = unit_lifecycle.unit_batch(workflow, pending, chosen, size)  # whole units, budget
    if not chosen:
        return "nothing-to-start"
    chosen, waiting = budgets.fit_batch(workflow, chosen)  # floor, domains: site-locked
    if waiting:
        return waiting
    batch = workflow.current_batch + 1
    for target in chosen:
        target.batch, target.state, target.started_at = batch, TargetState.RUNNING, now
    update_rows(WorkflowTarget, chosen, ["batch", "state", "started_at"])
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
    queue_steps(first_steps)
    return "started"


# --- Stopping a batch in time ---------------------------------------------------------------


def unstarted_risky_steps(workflow: Workflow) -> QuerySet[Step]:
    """The hardware-changing steps of the batch in flight that have not started: held from
    now on (``runner._StepBatch._held``)."""
    return (
        Step.objects.filter(
            workflow=workflow,
            target__batch=workflow.current_batch,
            target__state=TargetState.RUNNING,
            name__in=RISKY_STEPS,
            state__in=[StepState.PENDING, StepState.READY, StepState.WAITING],
            external_ref="",
        )
        .exclude(input__has_key="compensation")
        .exclude(input__has_key="retried_by")
    )


def hold_batch(
    workflow: Workflow,
    *,
    reason: str,
    kind: str,
    actor: str = "engine",
    fields: Iterable[str] = (),
) -> None:
    """Pause ``workflow`` (its locked row) so that the risky steps of its batch in flight that
    have not started do not start; steps running finish (or reach their next safe point)."""
    workflow.spec = {**workflow.spec, HOLD_RISKY_BATCH: workflow.current_batch}
    set_state(
        workflow,
        WorkflowState.PAUSED,
        reason=reason,
        kind=kind,
        actor=actor,
        fields=["spec", *fields],
    )


def hold_for_budget(workflow_id: int) -> bool:
    """After a server failed: when the failure budget is now used up and the batch in flight
    still has risky steps to start, pause before they start (so a budget of 1 does not let
    the batch-mates fail too). Called in the failing step's transaction, which has locked its
    steps and server already: the workflow's row is taken only if free (SKIP LOCKED), since a
    pause, cancel or operator action holding it locks steps and servers after it, and waiting
    here would deadlock. Busy, the hold is left to the advance queued now, which applies it
    under the workflow's lock (``advance``: ``_hold_if_reached``)."""
    workflow = (
        Workflow.objects.select_for_update(of=("self",), skip_locked=True)
        .select_related("site")
        .filter(pk=workflow_id)
        .first()
    )
    if workflow is None:  # busy (or gone): the advance after this commit stops the batch
        queue_advance(workflow_id)
        return False
    if workflow.state != WorkflowState.RUNNING:
        return False
    total = WorkflowTarget.objects.filter(workflow=workflow).count()
    return _hold_if_reached(workflow, total)


def _hold_if_reached(workflow: Workflow, total: int, *, in_batch: bool = False) -> bool:
    """Hold the batch in flight (``hold_batch``) when the failure budget is reached and some
    of its risky steps have not started; ``in_batch``: only when a server of that batch is
    among the failed (an advance, not a failure, asks: a budget used up in an earlier batch
    does not stop this one before it fails too). ``workflow`` is the caller's locked row."""
    failed = budgets.failed_targets([workflow.pk])
    if in_batch and not failed.filter(batch=workflow.current_batch).exists():
        return False
    failed_now = budgets.failed_serials([workflow.pk])[workflow.pk]
    if not budgets.budget_reached(workflow.spec, len(failed_now), total):
        return False
    serials = sorted(
        set(unstarted_risky_steps(workflow).values_list("target__ultraserver__serial", flat=True))
    )
    if not serials:
        return False  # nothing left to stop: ``advance`` applies the budget as the batch ends
    hold_batch(
        workflow,
        reason=f"failure budget reached: {len(failed_now)} of {total} failed "
        f"({', '.join(failed_now[:10])}; budget {workflow.spec.get('max_failures')} or "
        f"{workflow.spec.get('max_failure_pct')}%); paused itself before the risky steps still "
        f"to start in batch {workflow.current_batch} ({', '.join(serials[:10])})",
        kind="budget-exceeded",
    )
    return True
