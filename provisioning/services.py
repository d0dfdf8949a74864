"""Starting and steering workflows; maintenance windows; faults. Views and admin call these."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from factory.inventory import lifecycle
from factory.inventory.models import Site, UltraServer
from factory.inventory.services import transition
from factory.telemetry.choices import FaultAction
from factory.telemetry.faults import MAINTAIN_ACTIONS
from factory.telemetry.faults import set_action as set_fault_action
from factory.telemetry.models import Fault
from provisioning import budgets, history, waits
from provisioning.attribution import record_workflow_action
from provisioning.choices import (
    ACTIVE_WORKFLOW_STATES,
    HOLD_RISKY_BATCH,
    StepState,
    TargetState,
    WindowStatus,
    WorkflowKind,
    WorkflowState,
)
from provisioning.history import event, set_state
from provisioning.models import (
    FirmwareRelease,
    MaintenanceWindow,
    PartReplacement,
    Step,
    Workflow,
    WorkflowTarget,
)
from provisioning.queue import queue_advance, queue_step
from provisioning.workflows import definition_for
from provisioning.workflows.params import ParamError, ParamSet, Value
from provisioning.workflows.upgrade import UPGRADABLE
from tenants.errors import Conflict, DomainError, FieldError, Invalid, required_text
from tenants.events.kinds import EventKind
from tenants.events.services import emit
from tenants.services import audit
from tenants.services.changes import ChangeContext, check_preconditions, save_object
from tenants.sovereignty import services as sovereignty

DEPLOYABLE = frozenset({lifecycle.PLANNED, lifecycle.INSTALL_FAILED})
MAINTAINABLE = frozenset(
    {
        lifecycle.READY,
        lifecycle.IN_SERVICE,
        lifecycle.INSTALL_FAILED,
        lifecycle.BURN_IN_FAILED,
        lifecycle.DRAIN_FAILED,
        lifecycle.UPGRADE_FAILED,
        lifecycle.MAINTENANCE,
        lifecycle.MAINTENANCE_FAILED,
    }
)
ALLOWED_STATES: dict[str, frozenset[str]] = {
    WorkflowKind.DEPLOY: DEPLOYABLE,
    WorkflowKind.UPGRADE: UPGRADABLE,
    WorkflowKind.MAINTAIN: MAINTAINABLE,
}


def _invalid(field: str, code: str, message: str) -> ValidationError:
    return ValidationError({field: ValidationError(message, code=code)})


def _checked(
    params: ParamSet, data: object, field: str = "", *, partial: bool = False
) -> dict[str, Value]:
    """``data`` checked against a declaration (a kind's spec, a manual step's input): the one
    place that does. Defaults are filled in unless ``partial``. Refused: ``Invalid`` naming
    each field at fault under ``field`` (``spec.batch_size``), so that every front door (API,
    admin, console) shows the same errors on the same fields."""
    if not isinstance(data, Mapping):
        raise Invalid("must be an object of named values", field=field or None)
    try:
        return params.clean(data, partial=partial)
    except ParamError as exc:
        raise Invalid(
            errors=[
                FieldError(f"{field}.{p.name}" if field else p.name, p.code, p.message)
                for p in exc.problems
            ]
        ) from exc


def _holders_message(server_ids: Iterable[int]) -> str:
    holders = (
        WorkflowTarget.objects.filter(active=True, ultraserver_id__in=list(server_ids))
        .select_related("workflow", "ultraserver")
        .order_by("ultraserver__serial")[:5]
    )
    return "; ".join(
        f"UltraServer {h.ultraserver.serial} is held by {h.workflow.kind} workflow "
        f"#{h.workflow_id} ({h.workflow.state})"
        for h in holders
    )


def _baseline(model_id: int) -> FirmwareRelease | None:
    return FirmwareRelease.objects.filter(model_id=model_id, baseline=True).first()


def _releases(version: str, servers: list[UltraServer]) -> dict[int, FirmwareRelease]:
    """Firmware ``version``'s release for each model among ``servers``, by model id."""
    return {
        r.model_id: r
        for r in FirmwareRelease.objects.select_related("model").filter(
            version=version, model_id__in={s.model_id for s in servers}
        )
    }


def _prepare_spec(kind: str, servers: list[UltraServer], spec: dict) -> dict:
    """What the declared spec leaves to the fleet: a deploy's baseline version, and the
    release's origin and image digest per model (read from the release, never taken from the
    caller; the agent refuses an image whose digest differs)."""
    spec = dict(spec)
    if kind == WorkflowKind.DEPLOY and not spec.get("firmware_version"):
        release = _baseline(servers[0].model_id)
        if release is None:
            raise _invalid(
                "spec.firmware_version",
                "no_baseline",
                f"no firmware baseline for {servers[0].model.name}; name a version",
            )
        spec["firmware_version"] = release.version
    if kind in (WorkflowKind.UPGRADE, WorkflowKind.DEPLOY):
        releases = _releases(spec["firmware_version"], servers)
        missing = sorted({s.model.name for s in servers if s.model_id not in releases})
        if missing:
            raise _invalid(
                "spec.firmware_version",
                "unknown_release",
                f"firmware {spec['firmware_version']} is not a release for {', '.join(missing)}",
            )
        release = next(iter(releases.values()))
        spec["firmware_origin"] = release.origin
        # Per model: models of one version may come from different origins (their image URIs).
        spec["firmware_origins"] = {str(m): r.origin for m, r in sorted(releases.items())}
        spec["firmware_sha256"] = {str(m): r.sha256 for m, r in sorted(releases.items())}
    return spec


def _check_capacity_floor(site: Site, kind: str, servers: list[UltraServer]) -> None:
    """The floor, checked and claimed under the site's lock: call inside the transaction that
    writes the workflow's targets (``provisioning.budgets``)."""
    budgets.claim(site, kind, servers)


def create_workflow(
    kind: str,
    servers: Iterable[UltraServer],
    ctx: ChangeContext,
    *,
    spec: Mapping[str, object] | None = None,
    idempotency_key: str | None = None,
    reason: str = "",
    start: bool = True,
) -> tuple[Workflow, bool]:
    """Create (and start) a workflow over ``servers``. Returns ``(workflow, created)``; the same
    idempotency key returns the same workflow. ``spec`` is checked against the kind's
    declaration (``WorkflowDefinition.spec_params``), here and nowhere else: unknown keys,
    values of the wrong type or out of bounds and missing required ones are a ValidationError
    naming each ``spec.<name>``; defaults are filled in and stored. A server already held by an
    active workflow is a 409 naming the holder (enforced by the database, so two simultaneous
    requests cannot both win).

    Requests with the same idempotency key are serialized (``_one_at_a_time``): the first
    creates, the others find its workflow. Should one still lose a race (to a transaction
    that commits later, or off PostgreSQL), a refusal or a lost insert is answered with the
    workflow the key names once it is there: never a 409 for the same request."""
    servers = list(servers)
    args = (kind, servers, ctx, spec, reason, start)
    if not idempotency_key:
        return _create_workflow(*args, None), True
    with _one_at_a_time(idempotency_key):
        existing = Workflow.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return _same_request(existing, kind, servers), False
        try:
            return _create_workflow(*args, idempotency_key), True
        except (DomainError, ValidationError, IntegrityError):
            existing = Workflow.objects.filter(idempotency_key=idempotency_key).first()
            if existing is None:
                raise
            return _same_request(existing, kind, servers), False


# Advisory lock class of idempotency keys (pg_advisory_lock(class, hashtext(key))).
_IDEMPOTENCY_LOCK_CLASS = 0x57464B


@contextmanager
def _one_at_a_time(key: str) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock on ``key`` while inside: until the transaction ends if
    one is open (the caller's commit is what makes the workflow visible), otherwise until the
    block is left. Elsewhere (SQLite, which has one writer anyway) it holds nothing."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        yield
        return
    in_transaction = connection.in_atomic_block
    function = "pg_advisory_xact_lock" if in_transaction else "pg_advisory_lock"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s, hashtext(%s))", [_IDEMPOTENCY_LOCK_CLASS, key])
    try:
        yield
    finally:
        if not in_transaction:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_unlock(%s, hashtext(%s))", [_IDEMPOTENCY_LOCK_CLASS, key]
                )


def _create_workflow(
    kind: str,
    servers: list[UltraServer],
    ctx: ChangeContext,
    spec: Mapping[str, object] | None,
    reason: str,
    start: bool,
    idempotency_key: str | None,
) -> Workflow:
    definition = definition_for(kind)
    declared = _checked(definition.spec_params, {} if spec is None else spec, "spec")
    if not servers:
        raise _invalid("targets", "empty_selection", "the selection matches no UltraServers")
    unplaced = sorted(s.serial for s in servers if s.rack_id is None)
    if unplaced:
        raise _invalid("targets", "not_placed", f"not in a rack: {', '.join(unplaced[:10])}")
    sites = {s.rack.site for s in servers if s.rack is not None}
    if len(sites) > 1:
        raise _invalid(
            "targets",
            "several_sites",
            f"the selection spans sites {', '.join(sorted(s.code for s in sites))}; windows, "
            "approvals and rules are per site, so start one workflow per site",
        )
    site = sites.pop()
    if start:  # the database enforces this too; asking first gives the better message
        holders = _holders_message(s.pk for s in servers)
        if holders:
            raise Conflict(holders, code="held_by_workflow", field="targets")
    wrong = sorted(
        f"{s.serial} ({s.lifecycle_state})"
        for s in servers
        if s.lifecycle_state not in ALLOWED_STATES[kind]
    )
    if wrong:
        raise Conflict(
            f"a {kind} cannot start from these states: {', '.join(wrong[:10])}",
            code="invalid_state",
            field="targets",
        )
    prepared = _prepare_spec(kind, servers, declared)
    if kind in (WorkflowKind.UPGRADE, WorkflowKind.DEPLOY):
        # Provenance (each model's release, its signature verified against the trust roots) is
        # decided and recorded before the write transaction: a denial stays in the
        # access-transparency log, and no workflow or command exists.
        for release in _releases(prepared["firmware_version"], servers).values():
            sovereignty.check_release(site, release, ctx)
    try:
        with transaction.atomic():
            if start:  # a proposed one claims its servers when it starts
                _check_capacity_floor(site, kind, servers)
            workflow = Workflow.objects.create(
                kind=kind,
                site=site,
                spec=prepared,
                idempotency_key=idempotency_key or None,
                reason=reason,
                created_by=ctx.actor.username,
                started_by=ctx.actor.username if start else "",
                request_id=ctx.request_id[:64],
                state=WorkflowState.RUNNING if start else WorkflowState.PROPOSED,
                started_at=timezone.now() if start else None,
            )
            targets = WorkflowTarget.objects.bulk_create(
                WorkflowTarget(workflow=workflow, ultraserver=s, active=start) for s in servers
            )
            Step.objects.bulk_create(
                Step(
                    workflow=workflow,
                    target=target,
                    seq=i,
                    name=step.name,
                    input=step.input,
                    max_attempts=definition.step(step.name).max_attempts,
                )
                for target, server in zip(targets, servers, strict=True)
                for i, step in enumerate(definition.plan(workflow, server))
            )
            history.created(
                workflow,
                f"{kind} of {len(servers)} UltraServers at {site.code}"
                + ("" if start else " (proposed; starts when approved)"),
                targets=len(servers),
                actor=ctx.actor.username,
            )
            record_workflow_action(
                workflow, "create", ctx, reason=reason, servers=[s.pk for s in servers]
            )
            if start:
                queue_advance(workflow.pk)
    except IntegrityError as exc:
        holders = _holders_message(s.pk for s in servers)
        if holders:
            raise Conflict(holders, code="held_by_workflow", field="targets") from exc
        raise
    return workflow


def _same_request(existing: Workflow, kind: str, servers: Iterable[UltraServer]) -> Workflow:
    wanted = {s.pk for s in servers}
    held = set(existing.targets.values_list("ultraserver_id", flat=True))
    if existing.kind != kind or wanted != held:
        raise Conflict(
            f"idempotency key already used for {existing.kind} workflow #{existing.pk} over "
            "other UltraServers",
            code="idempotency_key_reused",
            field="idempotency_key",
        )
    return existing


def _locked(workflow: Workflow) -> Workflow:
    """The workflow's row, locked; a precondition the caller set on it (the request's
    ``If-Match``) is checked now, against the row as it is under the lock."""
    locked = Workflow.objects.select_for_update().select_related("site").get(pk=workflow.pk)
    check_preconditions(locked)
    return locked


def _refuse(workflow: Workflow, verb: str) -> Conflict:
    return Conflict(
        f"{workflow.kind} workflow #{workflow.pk} is {workflow.state}: cannot {verb}",
        code="invalid_workflow_state",
        field="state",
    )


def pause(workflow: Workflow, ctx: ChangeContext, reason: str = "") -> Workflow:
    """No new batch starts; servers mid-step finish that server (never left half-done)."""
    reason = required_text(reason)  # pausing says why (issue 17)
    with transaction.atomic():
        wf = _locked(workflow)
        if wf.state != WorkflowState.RUNNING:
            raise _refuse(wf, "pause")
        record_workflow_action(wf, "pause", ctx, to=WorkflowState.PAUSED, reason=reason)
        set_state(
            wf,
            WorkflowState.PAUSED,
            reason=reason or f"paused by {ctx.actor.username}",
            kind="paused",
            actor=ctx.actor.username,
        )
    return wf


#: What a resume may change: the failure budget, nothing else of the spec.
RESUME_PARAMS = ("max_failures", "max_failure_pct")


def resume(
    workflow: Workflow, ctx: ChangeContext, budget: Mapping[str, object] | None = None
) -> Workflow:
    """Resume a paused workflow. Failures so far count as acknowledged: the budget applies to
    new ones; a held batch (``rollout.hold_batch``) is no longer held. ``budget``: optionally
    a new one (some of ``RESUME_PARAMS``), as sent, checked against the kind's declared spec;
    any other key is refused, naming it."""
    declared = definition_for(workflow.kind).spec_params
    new_budget = _checked(
        ParamSet(*(declared[name] for name in RESUME_PARAMS if name in declared)),
        {} if budget is None else budget,
        partial=True,
    )
    with transaction.atomic():
        wf = _locked(workflow)
        if wf.state != WorkflowState.PAUSED:
            raise _refuse(wf, "resume")
        # Counted as the budget counts them (a rollback in progress included): that server's
        # end is not a new failure that pauses it again at once.
        failed = budgets.failure_count(wf)
        spec = {**wf.spec, **new_budget, budgets.ACKNOWLEDGED: failed}
        spec.pop(HOLD_RISKY_BATCH, None)  # the batch's risky steps may start again
        wf.spec = spec
        if wf.batch_finished_at is not None:
            wf.batch_finished_at = timezone.now() - dt.timedelta(days=1)  # gate passed
        record_workflow_action(wf, "resume", ctx, to=WorkflowState.RUNNING, budget=new_budget)
        set_state(
            wf,
            WorkflowState.RUNNING,
            reason="",
            kind="resumed",
            message=f"resumed by {ctx.actor.username}",
            actor=ctx.actor.username,
            fields=["spec", "batch_finished_at"],
        )
        queue_advance(wf.pk)
    return wf


def cancel(workflow: Workflow, ctx: ChangeContext, reason: str = "") -> Workflow:
    """Nothing new starts; servers mid-flight finish; the rest are released. A server whose
    step waits for a person (a dispatch, a repair) stops now, without that person
    (``waits.stop_at_waits``): left in its true state, flagged for maintenance, released."""
    reason = required_text(reason)  # so does cancelling
    with transaction.atomic():
        wf = _locked(workflow)
        if wf.state not in (*ACTIVE_WORKFLOW_STATES, WorkflowState.PROPOSED) or (
            wf.state == WorkflowState.CANCELLING
        ):
            raise _refuse(wf, "cancel")
        record_workflow_action(wf, "cancel", ctx, to=WorkflowState.CANCELLING, reason=reason)
        pending = wf.targets.filter(state=TargetState.PENDING)
        Step.objects.filter(target__in=pending).update(state=StepState.SKIPPED)
        pending.update(state=TargetState.SKIPPED, active=False, finished_at=timezone.now())
        waits.stop_at_waits(wf, ctx, reason)
        set_state(
            wf,
            WorkflowState.CANCELLING,
            reason=reason or f"cancelled by {ctx.actor.username}",
            kind="cancelling",
            actor=ctx.actor.username,
        )
        queue_advance(wf.pk)
    return wf


def start(workflow: Workflow, ctx: ChangeContext) -> Workflow:
    """Start a proposed workflow (e.g. one the firmware compliance scan proposed)."""
    with transaction.atomic():
        wf = _locked(workflow)
        if wf.state != WorkflowState.PROPOSED:
            raise _refuse(wf, "start")
        servers = [t.ultraserver for t in wf.targets.select_related("ultraserver")]
        _check_capacity_floor(wf.site, wf.kind, servers)  # the site's lock after the workflow's
        try:
            with transaction.atomic():
                wf.targets.update(active=True)
        except IntegrityError as exc:
            ids = wf.targets.values_list("ultraserver_id", flat=True)
            raise Conflict(
                _holders_message(ids) or "a target is held by another workflow",
                code="held_by_workflow",
                field="targets",
            ) from exc
        wf.started_at = timezone.now()
        wf.started_by, wf.request_id = ctx.actor.username, ctx.request_id[:64] or wf.request_id
        record_workflow_action(wf, "start", ctx, to=WorkflowState.RUNNING)
        set_state(
            wf,
            WorkflowState.RUNNING,
            kind="started",
            message=f"started by {ctx.actor.username}",
            actor=ctx.actor.username,
            fields=["started_at", "started_by", "request_id"],
        )
        queue_advance(wf.pk)
    return wf


def provide_input(
    workflow: Workflow,
    step_name: str,
    server_id: int | None,
    data: Mapping[str, object],
    ctx: ChangeContext,
) -> Step:
    """Hand a waiting manual step what it waits for (a technician; 'no parts needed'), checked
    against the inputs the step declares (``StepDefinition.inputs``): refused naming
    ``data.<name>``."""
    definition = definition_for(workflow.kind)
    manual = definition.manual_step(step_name)
    if manual is None:
        names = ", ".join(definition.manual_steps) or "none"
        raise _invalid(
            "step",
            "not_manual",
            f"{step_name!r} takes no input; manual steps of a {workflow.kind}: {names}",
        )
    assert manual.inputs is not None  # manual_step() is a step that declares its inputs
    data = _checked(manual.inputs, data, "data")
    with transaction.atomic():
        _locked(workflow)  # steered one at a time; the request's If-Match is checked here
        steps = Step.objects.select_for_update().filter(workflow=workflow, name=step_name)
        if server_id is not None:
            steps = steps.filter(target__ultraserver_id=server_id)
        step = steps.filter(
            state__in=[StepState.WAITING, StepState.PENDING, StepState.READY]
        ).first()
        if step is None:
            raise Conflict(
                f"workflow #{workflow.pk} has no {step_name} step waiting for input",
                code="step_not_waiting",
                field="step",
            )
        step.input = {**step.input, **data}
        step.next_check_at = timezone.now()
        step.save(update_fields=["input", "next_check_at"])
        record_workflow_action(workflow, "input", ctx, step=step_name, server=server_id, data=data)
        event(
            workflow.pk,
            "input",
            f"{step_name}: {sorted(data)} from {ctx.actor.username}",
            step=step,
            target=step.target,
            actor=ctx.actor.username,
        )
        if step.state == StepState.WAITING:
            queue_step(step.pk)
    return step


def record_part_replacement(
    workflow: Workflow, server: UltraServer, ctx: ChangeContext, **fields: Any
) -> PartReplacement:
    with transaction.atomic():
        _locked(workflow)  # steered one at a time; the request's If-Match is checked here
        if not workflow.targets.filter(ultraserver=server).exists():
            raise _invalid(
                "ultraserver", "not_a_target", f"{server.serial} is not in workflow #{workflow.pk}"
            )
        part = PartReplacement(
            workflow=workflow, ultraserver=server, technician=ctx.actor.username, **fields
        )
        part.full_clean()
        part.save()
        record_workflow_action(
            workflow, "part-replaced", ctx, servers=[server.pk], part=part.part, rma=part.rma_number
        )
        event(
            workflow.pk,
            "part-replaced",
            f"{server.serial}: {part.part} (RMA {part.rma_number})",
            actor=ctx.actor.username,
        )
        for step_id in Step.objects.filter(
            workflow=workflow, target__ultraserver=server, name="repair", state=StepState.WAITING
        ).values_list("pk", flat=True):
            Step.objects.filter(pk=step_id).update(next_check_at=timezone.now())
            queue_step(step_id)
    return part


def report_fault(
    server: UltraServer,
    reason: str,
    ctx: ChangeContext,
    *,
    open_workflow: bool = True,
    faults: Sequence[Fault] = (),
) -> tuple[UltraServer, Workflow | None]:
    """Flag the server (maintenance flag + reason) and open a maintain workflow, unless one
    already holds it (then it is returned). Another kind of workflow holding it sees the flag
    at its health gate.

    With ``faults`` (the open faults this report is about), what became of it is written on
    those of them that asked for maintenance (``Fault.action``), and a refusal does not raise:
    at a capacity floor they say ``waiting-capacity-floor`` with the refusal's words, the flag
    stays, and the health sweep tries again. Without, a refusal is the caller's ``Conflict``."""
    mine = Fault.objects.filter(pk__in=[f.pk for f in faults], action__in=MAINTAIN_ACTIONS)
    with transaction.atomic():
        server = transition(
            server.pk,
            server.lifecycle_state,
            ctx,
            fields={"in_maintenance": True, "fault_reason": reason[:500]},
        )
        holder = (
            WorkflowTarget.objects.filter(ultraserver=server, active=True)
            .select_related("workflow")
            .first()
        )
        if holder is not None:
            held = holder.workflow
            set_fault_action(mine, FaultAction.HELD, _held_detail(held))
            return server, held if held.kind == WorkflowKind.MAINTAIN else None
        if not open_workflow or server.lifecycle_state not in MAINTAINABLE:
            why = (
                f"not while {server.lifecycle_state}"
                if server.lifecycle_state not in MAINTAINABLE
                else "not asked for (the health sweep opens one)"
            )
            set_fault_action(
                mine, FaultAction.MAINTENANCE, f"maintenance flag set; maintain workflow {why}"
            )
            return server, None
        try:
            workflow, _ = create_workflow(
                WorkflowKind.MAINTAIN, [server], ctx, reason=f"fault: {reason}"[:500]
            )
        except Conflict as refusal:
            if not faults:
                raise
            set_fault_action(mine, *refused_action(refusal))
            return server, None
        set_fault_action(mine, FaultAction.MAINTENANCE, f"maintain workflow #{workflow.pk}")
    return server, workflow


def _held_detail(workflow: Workflow) -> str:
    if workflow.kind == WorkflowKind.MAINTAIN:
        return f"maintain workflow #{workflow.pk} already looks after the server"
    return f"{workflow.kind} workflow #{workflow.pk} holds the server; it sees the flag"


def refused_action(refusal: Conflict) -> tuple[str, str]:
    """A fault's action and detail when its maintain workflow was refused: the refusal's own
    words, so the fault says why it is waiting. Any other refusal leaves it pending
    maintenance (the server stays flagged): the health sweep revisits exactly those
    (``jobs.health_sweep``), so the fault is not left behind as merely recorded."""
    if refusal.code == "capacity_floor":
        return FaultAction.WAITING_FLOOR, refusal.message
    if refusal.code == "held_by_workflow":
        return FaultAction.HELD, refusal.message
    return (
        FaultAction.MAINTENANCE,
        f"maintenance flag set; no maintain workflow yet (the health sweep tries again): "
        f"{refusal.message}",
    )


# --- Maintenance windows -------------------------------------------------------------------


def _window_data(window: MaintenanceWindow) -> dict[str, Any]:
    return {
        "site": window.site.code,
        "name": window.name,
        "weekdays": list(window.weekdays),
        "start_time": window.start_time.isoformat(),
        "duration_minutes": window.duration_minutes,
        "status": window.status,
    }


def propose_window(window: MaintenanceWindow, ctx: ChangeContext) -> MaintenanceWindow:
    """The provider proposes a window, or changes one, which sends it back for approval:
    saved through the audited front door and announced to the site's tenant
    (``maintenance_window.requested``), in one transaction."""
    with transaction.atomic():
        change = "created" if window.pk is None else "changed"
        if window.pk is None:
            window.proposed_by = ctx.actor.username
        window.status, window.decided_by, window.decided_at = WindowStatus.PROPOSED, "", None
        window = save_object(window, ctx)
        emit(
            EventKind.MAINTENANCE_WINDOW_REQUESTED,
            window,
            tenant=window.site.tenant_id,
            name=f"{window.site.code}: {window.name}",
            data={**_window_data(window), "change": change},
        )
    return window


def decide_window(
    window: MaintenanceWindow, approve: bool, ctx: ChangeContext
) -> MaintenanceWindow:
    """A tenant-admin approves or rejects (or withdraws an approval of) a proposed window."""

    with transaction.atomic():
        window = (
            MaintenanceWindow.objects.select_for_update().select_related("site").get(pk=window.pk)
        )
        wanted = WindowStatus.APPROVED if approve else WindowStatus.REJECTED
        if window.status == wanted:
            raise Conflict(f"window is already {wanted}", code="already_decided", field="status")
        before = audit.snapshot(window)
        window.status = wanted
        window.decided_by = ctx.actor.username
        window.decided_at = timezone.now()
        window.save(update_fields=["status", "decided_by", "decided_at"])
        audit.record_change(ctx, window, before)
        emit(
            EventKind.MAINTENANCE_WINDOW_DECIDED,
            window,
            tenant=window.site.tenant_id,
            name=f"{window.site.code}: {window.name}",
            data={**_window_data(window), "decided_by": window.decided_by},
        )
    if approve:
        for wf_id in Workflow.objects.filter(
            site=window.site, state=WorkflowState.RUNNING
        ).values_list("pk", flat=True):
            queue_advance(wf_id)
    return window


def progress(workflow: Workflow) -> dict:
    """Counts by target state, by batch, and of steps: what a progress line needs."""
    by_state = dict(
        workflow.targets.values_list("state").annotate(n=Count("id")).values_list("state", "n")
    )
    batches: dict[int, dict[str, int]] = {}
    for batch, state, n in (
        workflow.targets.exclude(batch__isnull=True)
        .values_list("batch", "state")
        .annotate(n=Count("id"))
        .values_list("batch", "state", "n")
    ):
        if batch is not None:  # excluded above
            batches.setdefault(batch, {})[state] = n
    steps = workflow.steps.aggregate(
        total=Count("id"),
        done=Count("id", filter=Q(state=StepState.SUCCEEDED)),
        failed=Count("id", filter=Q(state=StepState.FAILED)),
    )
    total = sum(by_state.values())
    finished = sum(n for s, n in by_state.items() if s not in ("pending", "running"))
    return {
        "targets": total,
        "by_state": by_state,
        "by_batch": [{"batch": b, "by_state": batches[b]} for b in sorted(batches)],
        "steps": steps,
        "percent": round(100.0 * finished / total, 1) if total else 100.0,
    }
