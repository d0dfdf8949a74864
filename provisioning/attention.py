"""What a workflow needs from a person now (issue 17): ``None``, or one
``{kind, message, since, detail}``, so a workflow waiting for a technician the lockbox denied
does not look like any running workflow.

Kinds: ``waiting-technician`` (with why the last dispatch was denied), ``waiting-tenant`` (a
lockbox access request or a maintenance window the tenant has not decided), ``waiting-window``
(the next opening in the site's local time with its zone, and in UTC), ``waiting-parts`` (a
repair waiting for its part record or a new dispatch), ``paused-budget`` (which servers
failed, by serial), ``paused`` (paused by a person, with why). Any wait for a person past its
time limit is ``overdue`` in ``detail`` (and escalated: ``provisioning.waits``).

``needs_action_for`` reads a page of workflows in a fixed number of queries; the decision per
workflow (``decide``) is pure.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, TypedDict

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from provisioning import budgets
from provisioning.choices import ACTIVE_WORKFLOW_STATES, StepState, TargetState, WorkflowState
from provisioning.models import MaintenanceWindow, Step, Workflow, WorkflowEvent
from provisioning.waits import person_timeout
from provisioning.windows import Window, describe_opening, next_opening
from provisioning.workflows import definition_for
from tenants.sovereignty.models import AccessRequest, AccessRequestStatus

#: How ``rollout.advance`` words a wait for a window (its ``state_reason``).
WINDOW_WAIT_PREFIX = "waiting for the site's maintenance window"
WINDOW_NONE = "waiting: the site has no tenant-approved maintenance window"
#: The history kinds of the pauses (``history.set_state``'s ``kind``): the failure budget's
#: (``rollout``), a health gate's, a person's (``services.pause``) and an abort's.
BUDGET_PAUSE_KIND = "budget-exceeded"
PAUSE_EVENT_KINDS = (BUDGET_PAUSE_KIND, "health-gate", "paused", "batch-aborted")


class NeedsAction(TypedDict):
    kind: str
    message: str
    since: dt.datetime | None
    detail: dict[str, Any]


def manual_step_names() -> frozenset[str]:
    from provisioning.choices import WorkflowKind

    return frozenset(
        name for kind in WorkflowKind.values for name in definition_for(kind).manual_steps
    )


def needs_action_filter() -> Q:
    """The workflows ``needs_action_for`` gives an answer for, as one SQL condition (the
    ``?needs_action=true`` list filter)."""
    waiting = Step.objects.filter(
        workflow=OuterRef("pk"),
        state=StepState.WAITING,
        name__in=manual_step_names(),
        target__state=TargetState.RUNNING,
    )
    return (
        Q(state=WorkflowState.PAUSED)
        | Q(state=WorkflowState.RUNNING, state_reason__startswith=WINDOW_WAIT_PREFIX)
        | Q(state=WorkflowState.RUNNING, state_reason=WINDOW_NONE)
        | Q(Exists(waiting), state__in=list(ACTIVE_WORKFLOW_STATES))
    )


def needs_action(workflow: Workflow, now: dt.datetime | None = None) -> NeedsAction | None:
    return needs_action_for([workflow], now)[workflow.pk]


def needs_action_for(
    workflows: Sequence[Workflow], now: dt.datetime | None = None
) -> dict[int, NeedsAction | None]:
    """Each workflow's need, read for all of them at once (a list page: flat query count)."""
    now = now or timezone.now()
    answer: dict[int, NeedsAction | None] = {w.pk: None for w in workflows}
    active = [w for w in workflows if w.state in ACTIVE_WORKFLOW_STATES]
    if not active:
        return answer
    ids = [w.pk for w in active]
    manual = manual_step_names()
    waiting: dict[int, list[Step]] = defaultdict(list)
    for step in (
        Step.objects.filter(
            workflow_id__in=ids,
            state=StepState.WAITING,
            name__in=manual,
            target__state=TargetState.RUNNING,
        )
        .select_related("target__ultraserver")
        .order_by("workflow_id", "started_at", "pk")
    ):
        waiting[step.workflow_id].append(step)
    paused = [w.pk for w in active if w.state == WorkflowState.PAUSED]
    failed: dict[int, list[str]] = {}
    budget_paused: dict[int, dt.datetime] = {}
    if paused:
        failed = budgets.failed_serials(paused)  # as the budget counts them
        # What paused each one is its latest pause: a person's pause (or an abort) after an
        # earlier budget pause, and a resume in between, is not the budget's.
        latest: dict[int, tuple[str, dt.datetime]] = {}
        for wf_id, kind, at in (
            WorkflowEvent.objects.filter(workflow_id__in=paused, kind__in=PAUSE_EVENT_KINDS)
            .order_by("workflow_id", "at", "pk")
            .values_list("workflow_id", "kind", "at")
        ):
            latest[wf_id] = (kind, at)
        budget_paused = {
            wf_id: at for wf_id, (kind, at) in latest.items() if kind == BUDGET_PAUSE_KIND
        }
    sites = {w.site_id for w in active}
    pending_access: dict[int, list[int]] = defaultdict(list)
    for site_id, pk in AccessRequest.objects.filter(
        site_id__in=sites, status=AccessRequestStatus.PENDING
    ).values_list("site_id", "pk"):
        pending_access[site_id].append(pk)
    window_waits = [w for w in active if _waits_for_window(w)]
    proposed: dict[int, list[str]] = defaultdict(list)
    approved: dict[int, list[Window]] = defaultdict(list)
    if window_waits:
        zones = {w.site_id: w.site.time_zone for w in window_waits}
        for window in MaintenanceWindow.objects.filter(
            site_id__in=set(zones), status__in=["proposed", "approved"]
        ):
            if window.status == "proposed":
                proposed[window.site_id].append(window.name)
            else:
                approved[window.site_id].append(
                    Window(
                        frozenset(window.weekdays),
                        window.start_time,
                        dt.timedelta(minutes=window.duration_minutes),
                        zones[window.site_id],
                    )
                )
    for workflow in active:
        answer[workflow.pk] = decide(
            workflow,
            now,
            waiting=waiting.get(workflow.pk, []),
            failed=failed.get(workflow.pk, []),
            budget_paused_at=budget_paused.get(workflow.pk),
            pending_access=pending_access.get(workflow.site_id, []),
            proposed_windows=proposed.get(workflow.site_id, []),
            windows=approved.get(workflow.site_id, []),
        )
    return answer


def _waits_for_window(workflow: Workflow) -> bool:
    return workflow.state == WorkflowState.RUNNING and (
        workflow.state_reason.startswith(WINDOW_WAIT_PREFIX) or workflow.state_reason == WINDOW_NONE
    )


def decide(
    workflow: Workflow,
    now: dt.datetime,
    *,
    waiting: Iterable[Step],
    failed: Sequence[str],
    budget_paused_at: dt.datetime | None,
    pending_access: Sequence[int],
    proposed_windows: Sequence[str],
    windows: Sequence[Window] = (),
) -> NeedsAction | None:
    """The one need shown for a workflow, most urgent first: a person it waits for, then a
    pause, then a window."""
    steps = list(waiting)
    if steps:
        return _waiting_person(workflow, steps[0], len(steps), now, pending_access)
    if workflow.state == WorkflowState.PAUSED:
        if budget_paused_at is not None and failed:
            return {
                "kind": "paused-budget",
                "message": f"paused by its failure budget: {len(failed)} failed "
                f"({', '.join(failed[:10])}{'…' if len(failed) > 10 else ''}); "
                "look at them, then resume with a new budget or cancel",
                "since": budget_paused_at,
                "detail": {"failed_serials": list(failed)},
            }
        return {
            "kind": "paused",
            "message": workflow.state_reason or "paused",
            "since": workflow.updated_at,
            "detail": {},
        }
    if _waits_for_window(workflow):
        return _waiting_window(workflow, now, proposed_windows, windows)
    return None


def _waiting_person(
    workflow: Workflow, step: Step, count: int, now: dt.datetime, pending_access: Sequence[int]
) -> NeedsAction:
    target = step.target
    serial = target.ultraserver.serial if target is not None else ""
    since = step.started_at
    limit = person_timeout(workflow)  # the limit the escalation uses
    overdue = since is not None and now - since >= limit
    detail: dict[str, Any] = {
        "step": step.name,
        "step_id": step.pk,
        "serial": serial,
        "servers_waiting": count,
        "overdue": overdue,
        "escalated_at": step.output.get("escalated_at"),
        "limit_seconds": int(limit.total_seconds()),
    }
    denial = step.output.get("last_denial") or step.output.get("access_ended") or ""
    if pending_access:
        detail["access_requests"] = list(pending_access)
    if step.name == "dispatch":
        kind = "waiting-technician"
        detail["denied"] = list(step.output.get("denied", []))
        detail["last_denial"] = denial
        message = f"{serial}: waiting for a technician to be dispatched"
        if denial:
            message += f"; the last dispatch was denied: {denial}"
        if pending_access:
            kind = "waiting-tenant"
            ids = ", ".join(f"#{pk}" for pk in pending_access)
            message += f"; the tenant has not decided access request {ids}"
    elif step.name == "repair":
        kind = "waiting-parts"
        detail["access_ended"] = step.output.get("access_ended", "")
        message = (
            f"{serial}: {denial}: awaiting a new dispatch"
            if denial
            else f"{serial}: waiting for the part replacement record (or 'no parts needed')"
        )
    else:
        kind = "waiting-input"
        message = f"{serial}: {step.name} waits for a person's input"
    if overdue:
        message = f"overdue: {message}"
    return {"kind": kind, "message": message, "since": since, "detail": detail}


def _waiting_window(
    workflow: Workflow,
    now: dt.datetime,
    proposed_windows: Sequence[str],
    windows: Sequence[Window],
) -> NeedsAction:
    site = workflow.site
    opening = next_opening(list(windows), now)
    detail: dict[str, Any] = {"time_zone": site.time_zone}
    if opening is None:
        message = f"waiting: {site.code} has no tenant-approved maintenance window"
        if proposed_windows:
            detail["proposed_windows"] = list(proposed_windows)
            return {
                "kind": "waiting-tenant",
                "message": f"{message}; the tenant has not approved {', '.join(proposed_windows)}",
                "since": workflow.updated_at,
                "detail": detail,
            }
        return {
            "kind": "waiting-window",
            "message": message,
            "since": workflow.updated_at,
            "detail": detail,
        }
    detail["opens_local"] = opening.isoformat()
    detail["opens_utc"] = opening.astimezone(dt.UTC).isoformat()
    return {
        "kind": "waiting-window",
        "message": f"waiting for {site.code}'s maintenance window: next opens "
        f"{describe_opening(opening, site.time_zone)}",
        "since": workflow.updated_at,
        "detail": detail,
    }
