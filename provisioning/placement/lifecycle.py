"""Workload units in the lifecycle: rollouts count units as well as servers, a failed member
degrades its unit and proposes a replacement, and an accepted replacement swaps it in.

**Rollouts** (``unit_batch``, called by ``rollout._start_batch`` for upgrade and maintain):

- ``max_unavailable_units`` (spec, default 1; 0 = no limit): at most that many of a tenant's
  units may be *down* at once across the site. A unit is down while one of its members is out:
  held by a running target of an in-flight workflow, failed (the unit is degraded), or not
  serving (out of service, or flagged for maintenance by a fault). Only the workflow's site
  counts. Units already down elsewhere are counted; taking more members of a unit that is
  already down does not count again, and a member that is out already (a faulty server's
  maintain workflow) is never held back. A *failed* member counts only while a workflow holds
  it (its repair is under way) or it failed in this rollout: one that nothing holds is
  stranded until its replacement is accepted, and waiting for it would never end, so it does
  not block the other units (``units_down``). While the budget blocks everything, the
  workflow's ``state_reason`` names the units down and why (``waiting-units``).
- A unit's own ``max_unavailable`` decides how many of its members go together (0: the whole
  unit in one window). When a batch takes a unit's first member, its other pending members in
  the same workflow join the *same* batch, as far as the unit's policy and the per-rack/feed
  limit allow. ``batch_size`` is a count of servers *started*: a new unit (or a server in no
  unit) starts only while the batch is below it, but a started unit's members may take the
  batch beyond it. Units already begun in this workflow (or down elsewhere) go first, so a
  rollout finishes one unit before it opens the next.
- The per-rack/feed limit (``max_unavailable_per_domain``) stays a hard physical limit: a
  unit member it leaves out waits for the next batch (the unit stays the one that is down).
- Servers in no unit behave as before; with no unit member pending the batch is unchanged.

**Failures** (``member_failed``): a member whose workflow target fails, or on which a server
fault (not a minor one) opens, is marked ``failed`` and its unit ``degraded``; a
``UnitReplacement`` proposes a healthy server under the unit's lowest network node (the one
solver, ``same_node`` near the unit's path, then the nearest). When no server qualifies the
proposal is stored **rejected** with the solver's reasons (``explanation.reasons``), so every
``proposed`` row names a server the tenant can accept.

**Accepting** (``accept``; at once, by the system, when the unit's ``auto_replace`` allows):
the proposed server is checked again (409 ``replacement_unusable``
naming why), the failed member becomes ``replaced``, the new server joins in its role (leader
if the leader failed), the unit is ``active`` again when no member is still failed, and a
maintain workflow is opened for the failed server unless a workflow holds it already. The
replacement is then ``done`` (with ``workflow_id``), or ``accepted`` when the maintain
workflow could not be opened yet (the reason is in ``explanation.maintain``);
``retry_accepted`` (the scheduled job) tries those again until it opens.

Locks: the site's row first (``lock_capacity_scope``, as reserve / place / release take it),
then the unit's, then the replacement's, member's and server's, so an accept serializes with
placements (no double booking) and never waits on a unit while holding what they wait for.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from factory.inventory.lifecycle import IN_SERVICE
from factory.inventory.models import PowerFeed, UltraServer
from factory.inventory.models.locking import lock_capacity_scope
from factory.inventory.topology import common_depth, hops
from provisioning.choices import ACTIVE_WORKFLOW_STATES, TargetState, WorkflowKind
from provisioning.history import event
from provisioning.models import Workflow, WorkflowTarget
from provisioning.placement.choices import (
    HOLDING_MEMBER_STATES,
    HOLDING_UNIT_STATES,
    MemberState,
    ReplacementState,
    TopologyConstraint,
    UnitState,
)
from provisioning.placement.models import UnitMember, UnitReplacement, WorkloadUnit
from provisioning.placement.selectors import candidates_for
from provisioning.placement.solver import Candidate, Request, Unplaceable, solve
from tenants.access import SYSTEM
from tenants.choices import AuditSource
from tenants.errors import Conflict, DomainError
from tenants.services.changes import ChangeContext, save_object

log = logging.getLogger(__name__)

#: The spec parameter (declared by the upgrade and maintain definitions).
MAX_UNAVAILABLE_UNITS = "max_unavailable_units"
LIFECYCLE_CTX = ChangeContext(actor=SYSTEM, source=AuditSource.SYSTEM)


# --- Rollouts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    unit_id: int
    unit_name: str
    tenant_id: int
    cap: int  # members out at once; 0 = the whole unit
    failed: bool  # already out (``_not_serving``): taking it adds no disruption


def _not_serving(state: str, lifecycle_state: str, in_maintenance: bool) -> bool:
    """A member that is out already: failed, or its server not serving (out of service or
    flagged for maintenance, say by a fault whose maintain workflow has not started yet).
    Taking it out disrupts nothing more, and its unit is down."""
    return state == MemberState.FAILED or lifecycle_state != IN_SERVICE or in_maintenance


def _memberships(server_ids: Iterable[int]) -> dict[int, _Member]:
    rows = UnitMember.objects.filter(
        ultraserver_id__in=list(server_ids),
        state__in=HOLDING_MEMBER_STATES,
        unit__state__in=HOLDING_UNIT_STATES,
    ).values_list(
        "ultraserver_id",
        "unit_id",
        "unit__name",
        "unit__tenant_id",
        "unit__max_unavailable",
        "state",
        "ultraserver__lifecycle_state",
        "ultraserver__in_maintenance",
    )
    return {
        server: _Member(unit, name, tenant, cap, _not_serving(state, serving, flagged))
        for server, unit, name, tenant, cap, state, serving, flagged in rows
    }


@dataclass
class UnitDown:
    """A unit with members out: how many (its own ``max_unavailable`` counts them), whether
    it counts against ``max_unavailable_units``, and why (for the waiting reason)."""

    unit_id: int
    name: str
    tenant_id: int
    out: int = 0
    counted: bool = False
    causes: list[str] = field(default_factory=list)


def _replacement_note(replacement: tuple[int, str, dict[str, Any]] | None) -> str:
    if replacement is None:
        return "no replacement proposed"
    pk, state, explanation = replacement
    if state == ReplacementState.REJECTED:
        reasons = explanation.get("reasons")
        if reasons:  # the solver found no server
            return f"replacement #{pk} rejected: {reasons[0]}"
        return f"replacement #{pk} rejected by {explanation.get('rejected_by', 'the tenant')}"
    if state == ReplacementState.ACCEPTED:
        return f"replacement #{pk} accepted: {explanation.get('maintain', '')}"
    return f"replacement #{pk} {state}"


def units_down(
    site_id: int, tenant_ids: Iterable[int], *, besides: int | None = None
) -> dict[int, UnitDown]:
    """The units of ``tenant_ids`` at ``site_id`` with members out, in fixed queries. A member
    is out while held by a running target of an in-flight workflow (other than ``besides``,
    the rollout asking), failed, or not serving. A unit counts as *down* (against
    ``max_unavailable_units``) while a member is out, except that a **failed** member counts
    only while a workflow holds it (an active target: its repair is under way) or it failed in
    ``besides`` itself: a failed member nothing holds is stranded, waiting for its replacement,
    and waiting would never end, so its unit (degraded, named in ``state_reason``) does not
    block rollouts of the other units. It still counts towards its own unit's
    ``max_unavailable``."""
    members = UnitMember.objects.filter(
        unit__site_id=site_id,
        unit__tenant_id__in=list(tenant_ids),
        unit__state__in=HOLDING_UNIT_STATES,
        state__in=HOLDING_MEMBER_STATES,
    )
    holders = WorkflowTarget.objects.filter(
        active=True,
        workflow__state__in=ACTIVE_WORKFLOW_STATES,
        ultraserver_id__in=members.values("ultraserver_id"),
    )
    if besides is not None:
        holders = holders.exclude(workflow_id=besides)
    running: dict[int, str] = {}
    held: set[int] = set()
    for server_id, state, workflow_id, kind in holders.values_list(
        "ultraserver_id", "state", "workflow_id", "workflow__kind"
    ):
        held.add(server_id)
        if state == TargetState.RUNNING:
            running[server_id] = f"held by {kind} workflow #{workflow_id}"
    mine: set[int] = set()
    if besides is not None:
        mine = set(
            WorkflowTarget.objects.filter(
                workflow_id=besides, ultraserver_id__in=members.values("ultraserver_id")
            ).values_list("ultraserver_id", flat=True)
        )
    rows = list(
        members.values_list(
            "pk",
            "ultraserver_id",
            "ultraserver__serial",
            "unit_id",
            "unit__name",
            "unit__tenant_id",
            "state",
            "state_reason",
            "ultraserver__lifecycle_state",
            "ultraserver__in_maintenance",
        )
    )
    failed_ids = [row[0] for row in rows if row[6] == MemberState.FAILED]
    latest: dict[int, tuple[int, str, dict[str, Any]]] = {}
    for member_id, pk, state, explanation in (
        UnitReplacement.objects.filter(failed_member_id__in=failed_ids)
        .order_by("created_at", "pk")
        .values_list("failed_member_id", "pk", "state", "explanation")
    ):
        latest[member_id] = (pk, state, explanation)
    down: dict[int, UnitDown] = {}
    for member_id, server_id, serial, unit_id, name, tenant, state, why, serving, flagged in rows:
        if server_id in running:
            cause, counts = f"member {serial} {running[server_id]}", True
        elif state == MemberState.FAILED:
            counts = server_id in held or server_id in mine
            cause = (
                f"member {serial} failed ({why or 'no reason'}), "
                f"{_replacement_note(latest.get(member_id))}"
            )
            if not counts:
                cause += "; stranded: not counted"
        elif serving != IN_SERVICE or flagged:
            what = serving if serving != IN_SERVICE else "flagged for maintenance"
            cause, counts = f"member {serial} not serving ({what})", True
        else:
            continue
        unit = down.setdefault(unit_id, UnitDown(unit_id, name, tenant))
        unit.out += 1
        unit.counted = unit.counted or counts
        unit.causes.append(cause)
    return down


def _domains(pending: Sequence[WorkflowTarget]) -> dict[int, list[str]]:
    """Each target's failure domains (its rack and the rack's feeds), as ``_start_batch``
    names them."""
    rack_ids = {t.ultraserver.rack_id for t in pending if t.ultraserver.rack_id is not None}
    feeds: dict[int | None, list[int]] = defaultdict(list)
    for feed_id, rack_id in PowerFeed.objects.filter(rack_id__in=rack_ids).values_list(
        "id", "rack_id"
    ):
        feeds[rack_id].append(feed_id)
    return {
        t.pk: [
            f"rack:{t.ultraserver.rack_id}",
            *(f"feed:{f}" for f in feeds[t.ultraserver.rack_id]),
        ]
        for t in pending
    }


def unit_batch(
    workflow: Workflow,
    pending: Sequence[WorkflowTarget],
    chosen: list[WorkflowTarget],
    size: int,
) -> list[WorkflowTarget]:
    """The batch to start, unit-aware (see the module docstring). ``pending`` are the
    workflow's pending targets in order (``ultraserver`` loaded), ``chosen`` the batch the
    server-only rules picked; it is returned as it is when no pending server is in a unit or
    the workflow's kind does not count units. An empty answer while ``chosen`` was not says
    why in the workflow's ``state_reason`` (once, with an event)."""
    if MAX_UNAVAILABLE_UNITS not in workflow.spec and workflow.kind not in (
        WorkflowKind.UPGRADE,
        WorkflowKind.MAINTAIN,
    ):
        return chosen
    members = _memberships(t.ultraserver_id for t in pending)
    if not members:
        return chosen
    limit = int(workflow.spec.get(MAX_UNAVAILABLE_UNITS, 1))
    domain_limit = int(workflow.spec.get("max_unavailable_per_domain", 0)) or None
    tenants = {m.tenant_id for m in members.values()}
    downs = units_down(workflow.site_id, tenants, besides=workflow.pk)
    out: Counter[int] = Counter({unit_id: d.out for unit_id, d in downs.items()})
    down: dict[int, set[int]] = defaultdict(set)
    for d in downs.values():
        if d.counted:
            down[d.tenant_id].add(d.unit_id)
    begun = set(
        UnitMember.objects.filter(
            unit_id__in={m.unit_id for m in members.values()},
            ultraserver__workflow_targets__workflow=workflow,
            ultraserver__workflow_targets__batch__gte=0,
        ).values_list("unit_id", flat=True)
    )

    def first(t: WorkflowTarget) -> int:
        m = members.get(t.ultraserver_id)
        return 0 if m is not None and (m.unit_id in begun or m.unit_id in out) else 1

    ordered = sorted(pending, key=first)  # stable: otherwise the order the rules gave
    domains = _domains(pending)
    in_use: Counter[str] = Counter()
    taken: list[WorkflowTarget] = []
    here: set[int] = set()  # units this batch takes members of
    refused: dict[int, str] = {}
    for target in ordered:
        doms = domains[target.pk]
        if domain_limit and any(in_use[d] >= domain_limit for d in doms):
            continue
        m = members.get(target.ultraserver_id)
        if m is not None and not m.failed:
            if m.unit_id not in here:
                if len(taken) >= size:
                    continue
                if m.unit_id not in down[m.tenant_id] and limit and len(down[m.tenant_id]) >= limit:
                    refused[m.unit_id] = m.unit_name
                    continue
            if m.cap and out[m.unit_id] >= m.cap:
                continue
            down[m.tenant_id].add(m.unit_id)
            out[m.unit_id] += 1
            here.add(m.unit_id)
        elif len(taken) >= size:
            continue
        in_use.update(doms)
        taken.append(target)
    if not taken and chosen:
        names = ", ".join(sorted(refused.values())[:5])
        blocking = "; ".join(
            f"unit {d.name}: {', '.join(d.causes[:3])}"
            for d in sorted(downs.values(), key=lambda d: d.name)
            if d.counted
        )
        reason = (
            f"waiting: at most {limit} unit(s) of a tenant down at once "
            f"({MAX_UNAVAILABLE_UNITS}); down: {blocking or 'none'}; "
            f"next: {names or 'a unit whose members are out'}"
        )[:1000]
        if workflow.state_reason != reason:
            workflow.state_reason = reason
            workflow.save(update_fields=["state_reason", "updated_at"])
            event(workflow.pk, "waiting-units", reason)
    return taken


# --- Failures and replacements ---------------------------------------------------------------


def on_faults(sender: Any, faults: Sequence[Any], **kwargs: Any) -> None:
    """``fault_opened`` receiver: a server fault whose rule drains it (``Fault.drains``, by the
    fault policy) fails the server's unit membership. Never raises (the signal's sender must
    not fail)."""
    for server_id, detail in {f.ultraserver_id: f.detail for f in faults if f.drains}.items():
        try:
            member_failed(server_id, f"fault: {detail}")
        except Exception:  # logged; the health sweep's next fault tries again
            log.exception("unit member %s not marked failed", server_id)


def on_target_saved(
    sender: Any,
    instance: WorkflowTarget,
    update_fields: Iterable[str] | None = None,
    **kwargs: Any,
) -> None:
    """``post_save`` receiver on ``WorkflowTarget``: a target that failed fails the server's
    unit membership, in the runner's transaction (a savepoint: a refusal here never undoes
    the runner's write)."""
    if instance.state != TargetState.FAILED:
        return
    if update_fields is not None and "state" not in update_fields:
        return
    if not UnitMember.objects.filter(
        ultraserver_id=instance.ultraserver_id, state=MemberState.ACTIVE
    ).exists():
        return
    try:
        with transaction.atomic():
            member_failed(
                instance.ultraserver_id,
                f"workflow #{instance.workflow_id} failed it: {instance.error}"[:500],
            )
    except Exception:  # logged; the failure itself is recorded by the runner
        log.exception("unit member %s not marked failed", instance.ultraserver_id)


def member_failed(
    server_id: int, reason: str, ctx: ChangeContext = LIFECYCLE_CTX
) -> UnitReplacement | None:
    """Mark the server's active membership failed, its unit degraded, and propose a
    replacement. Idempotent: a member already failed returns its open proposal (or None)."""
    with transaction.atomic():
        found = (
            UnitMember.objects.filter(
                ultraserver_id=server_id,
                state__in=HOLDING_MEMBER_STATES,
                unit__state__in=HOLDING_UNIT_STATES,
            )
            .values_list("unit_id", "unit__site_id")
            .first()
        )
        if found is None:
            return None
        unit_id, site_id = found
        lock_capacity_scope(site_ids=[site_id])  # site, then unit: the order accept uses
        unit = WorkloadUnit.objects.select_for_update().get(pk=unit_id)
        member = UnitMember.objects.get(
            unit=unit, ultraserver_id=server_id, state__in=HOLDING_MEMBER_STATES
        )
        if member.state == MemberState.FAILED:
            return unit.replacements.filter(
                failed_member=member, state=ReplacementState.PROPOSED
            ).first()
        member.state, member.state_reason = MemberState.FAILED, reason[:500]
        save_object(member, ctx)
        unit.state = UnitState.DEGRADED
        serial = UltraServer.objects.values_list("serial", flat=True).get(pk=server_id)
        unit.state_reason = f"member {serial} failed: {reason}"[:500]
        save_object(unit, ctx)
        proposal = propose(unit, member, ctx)
        if unit.auto_replace and proposal.state == ReplacementState.PROPOSED:
            return _auto_accept(proposal)
        return proposal


def _auto_accept(proposal: UnitReplacement) -> UnitReplacement:
    """The unit's policy allows the swap without asking: accept as the system (audited as
    such). A refusal leaves the proposal for the tenant, saying why."""
    try:
        with transaction.atomic():
            return accept(proposal, LIFECYCLE_CTX)
    except (DomainError, ValidationError, IntegrityError) as refusal:
        message = getattr(refusal, "message", None) or str(refusal)
        proposal.explanation = {
            **proposal.explanation,
            "auto_replace": f"not accepted automatically: {message}"[:500],
        }
        return save_object(proposal, LIFECYCLE_CTX)


def _unit_path(unit: WorkloadUnit, by_id: dict[int, Candidate]) -> tuple[str, ...]:
    """The path down to the unit's lowest common network node (its members' shared prefix)."""
    paths = [
        by_id[s].path
        for s in unit.members.filter(state__in=HOLDING_MEMBER_STATES).values_list(
            "ultraserver_id", flat=True
        )
        if s in by_id and by_id[s].path
    ]
    if not paths:
        return ()
    depth = min(len(p) for p in paths)
    for other in paths[1:]:
        depth = min(depth, common_depth(paths[0], other))
    return paths[0][:depth]


def _attempts(unit: WorkloadUnit) -> list[tuple[str, Any]]:
    """Where a replacement may come from, in order: the unit's reservation, then free capacity."""
    sources: list[tuple[str, Any]] = []
    if unit.reservation_id is not None:
        sources.append(("reservation", unit.reservation))
    sources.append(("free", None))
    return sources


def _candidates(unit: WorkloadUnit, model_id: int, reservation: Any) -> list[Candidate]:
    return candidates_for(
        unit.site, tenant_id=unit.tenant_id, model_id=model_id, reservation=reservation
    )


def propose(
    unit: WorkloadUnit, member: UnitMember, ctx: ChangeContext = LIFECYCLE_CTX
) -> UnitReplacement:
    """A ``UnitReplacement`` for ``member``: a healthy server under the unit's lowest node
    (``same_node``), else the nearest; none → stored ``rejected`` with the solver's reasons."""
    model_id = UltraServer.objects.values_list("model_id", flat=True).get(pk=member.ultraserver_id)
    reasons: list[str] = []
    excluded: dict[str, str] = {}
    for source, reservation in _attempts(unit):
        candidates = _candidates(unit, model_id, reservation)
        by_id = {c.id: c for c in candidates}
        near = _unit_path(unit, by_id)
        for constraint in (TopologyConstraint.SAME_NODE, TopologyConstraint.NONE):
            request = Request(size=1, constraint=constraint, near=(near,) if near else ())
            try:
                placement = solve(candidates, request)
            except Unplaceable as refusal:
                reasons += [f"{source}, {constraint}: {r}" for r in refusal.reasons]
                excluded.update(refusal.excluded)
                continue
            chosen = by_id[placement.members[0]]
            explanation = {
                "source": source,
                "constraint": str(constraint),
                "unit_node": near[-1] if near else None,
                "same_node": bool(near) and chosen.path[: len(near)] == near,
                "hops_to_unit": hops(chosen.path, near) if near and chosen.path else None,
                "solver": placement.explanation,
                "reasons_before": reasons,
            }
            return save_object(
                UnitReplacement(
                    unit=unit,
                    failed_member=member,
                    replacement_id=chosen.id,
                    state=ReplacementState.PROPOSED,
                    explanation=explanation,
                ),
                ctx,
            )
    return save_object(
        UnitReplacement(
            unit=unit,
            failed_member=member,
            replacement=None,
            state=ReplacementState.REJECTED,
            explanation={
                "rejected_by": "solver",
                "reasons": reasons or ["no candidate server"],
                "excluded": excluded,
            },
        ),
        ctx,
    )


def _refuse_unless_proposed(replacement: UnitReplacement) -> None:
    if replacement.state != ReplacementState.PROPOSED:
        raise Conflict(
            f"replacement #{replacement.pk} is {replacement.state}; only a proposed one is "
            "accepted or rejected",
            code="replacement_not_proposed",
            field="state",
        )


def _locked(replacement: UnitReplacement) -> tuple[WorkloadUnit, UnitReplacement]:
    """The unit's row, then the replacement's, locked (the order ``member_failed`` uses)."""
    unit = WorkloadUnit.objects.select_for_update().get(pk=replacement.unit_id)
    locked = UnitReplacement.objects.select_for_update().get(pk=replacement.pk)
    return unit, locked


def accept(replacement: UnitReplacement, ctx: ChangeContext) -> UnitReplacement:
    """Swap the proposed server in for the failed member (see the module docstring)."""
    with transaction.atomic():
        lock_capacity_scope(site_ids=[replacement.unit.site_id])  # first, as placements do
        unit, replacement = _locked(replacement)
        _refuse_unless_proposed(replacement)
        if unit.state not in HOLDING_UNIT_STATES:
            raise Conflict(f"unit {unit.name} is {unit.state}", code="unit_released", field="unit")
        failed = UnitMember.objects.select_for_update().get(pk=replacement.failed_member_id)
        if failed.state != MemberState.FAILED:
            raise Conflict(
                f"the member this replaces is {failed.state}, no longer failed",
                code="member_not_failed",
                field="failed_member",
            )
        server_id = replacement.replacement_id
        if server_id is None:  # a rejected proposal has none; a proposed one always does
            raise Conflict("no server proposed", code="no_replacement", field="replacement")
        server = UltraServer.objects.select_for_update().get(pk=server_id)
        source = replacement.explanation.get("source")
        reservation = unit.reservation if source == "reservation" else None
        found = next(
            (c for c in _candidates(unit, server.model_id, reservation) if c.id == server_id),
            None,
        )
        problems = list(found.problems) if found is not None else ["no longer the unit's tenant's"]
        if problems:
            raise Conflict(
                f"{server.serial} can no longer join unit {unit.name}: {'; '.join(problems)}",
                code="replacement_unusable",
                field="replacement",
            )
        now = timezone.now()
        failed.state, failed.left_at = MemberState.REPLACED, now
        failed.state_reason = f"replaced by {server.serial} (replacement #{replacement.pk})"
        save_object(failed, ctx)
        try:
            with transaction.atomic():
                save_object(UnitMember(unit=unit, ultraserver=server, role=failed.role), ctx)
        except (IntegrityError, ValidationError) as exc:
            raise Conflict(
                f"{server.serial} joined another unit meanwhile",
                code="replacement_unusable",
                field="replacement",
            ) from exc
        if not unit.members.filter(state=MemberState.FAILED).exists():
            unit.state, unit.state_reason = UnitState.ACTIVE, ""
            save_object(unit, ctx)
        workflow_id, note = _maintain(failed, unit, replacement, ctx.actor.username)
        replacement.workflow_id = workflow_id
        replacement.state = ReplacementState.DONE if workflow_id else ReplacementState.ACCEPTED
        replacement.explanation = {
            **replacement.explanation,
            "accepted_by": ctx.actor.username,
            "maintain": note,
        }
        return save_object(replacement, ctx)


def _maintain(
    failed: UnitMember, unit: WorkloadUnit, replacement: UnitReplacement, accepted_by: str
) -> tuple[int | None, str]:
    """The failed server's maintain workflow: the one holding it, or a new one."""
    from provisioning.services import create_workflow

    holder = (
        WorkflowTarget.objects.filter(ultraserver_id=failed.ultraserver_id, active=True)
        .values_list("workflow_id", flat=True)
        .first()
    )
    if holder is not None:
        return holder, f"held by workflow #{holder}"
    server = UltraServer.objects.select_related("rack", "model").get(pk=failed.ultraserver_id)
    try:
        with transaction.atomic():
            workflow, _ = create_workflow(
                WorkflowKind.MAINTAIN,
                [server],
                LIFECYCLE_CTX,
                reason=f"unit {unit.name}: replaced by replacement #{replacement.pk} "
                f"(accepted by {accepted_by})"[:500],
            )
    except (DomainError, ValidationError) as refusal:
        message = getattr(refusal, "message", None) or "; ".join(
            getattr(refusal, "messages", [str(refusal)])
        )
        return None, f"no maintain workflow yet: {message}"[:500]
    return workflow.pk, f"maintain workflow #{workflow.pk} opened"


def reject(replacement: UnitReplacement, ctx: ChangeContext) -> UnitReplacement:
    """The tenant declines the proposal; the unit stays degraded."""
    with transaction.atomic():
        _, replacement = _locked(replacement)
        _refuse_unless_proposed(replacement)
        replacement.state = ReplacementState.REJECTED
        replacement.explanation = {**replacement.explanation, "rejected_by": ctx.actor.username}
        return save_object(replacement, ctx)


def retry_accepted(now: dt.datetime | None = None) -> int:
    """Open the maintain workflow of every ``accepted`` replacement whose workflow could not be
    opened when it was accepted (say the capacity floor refused it); each that opens is
    ``done`` with its ``workflow_id``, the others keep the latest reason. Called by the
    scheduled job; idempotent (a row another run holds is skipped, one no longer
    ``accepted`` is left alone). Returns how many were done."""
    now = now or timezone.now()
    rows = list(
        UnitReplacement.objects.filter(state=ReplacementState.ACCEPTED)
        .order_by("pk")
        .values_list("pk", "unit__site_id")
    )
    done = 0
    for pk, site_id in rows:
        with transaction.atomic():
            lock_capacity_scope(site_ids=[site_id])  # site first, as accept
            replacement = (
                UnitReplacement.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("unit", "failed_member")
                .filter(pk=pk, state=ReplacementState.ACCEPTED)
                .first()
            )
            if replacement is None:
                continue
            accepted_by = str(replacement.explanation.get("accepted_by") or "system")
            workflow_id, note = _maintain(
                replacement.failed_member, replacement.unit, replacement, accepted_by
            )
            replacement.explanation = {
                **replacement.explanation,
                "maintain": note,
                "retried_at": now.isoformat(),
            }
            if workflow_id is not None:
                replacement.state, replacement.workflow_id = ReplacementState.DONE, workflow_id
                done += 1
            save_object(replacement, LIFECYCLE_CTX)
    return done
