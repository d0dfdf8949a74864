"""Capacity reservations and workload units: the write side (plain functions, audited).

Every placement runs under the site's capacity lock (``lock_capacity_scope``), reads its
candidates there (``selectors.candidates_for``) and asks the one solver (``solver.solve``), so
two placements at one site never choose the same server; the partial unique constraint on
active unit membership backs that for anything that does not take the lock. A refusal writes
nothing (but a sovereignty decision record, which is kept on purpose).
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import IntegrityError, models, transaction
from django.utils import timezone

from factory.inventory import topology
from factory.inventory.models.locking import lock_capacity_scope
from provisioning.placement.choices import (
    HOLDING_MEMBER_STATES,
    HOLDING_RESERVATION_STATES,
    HOLDING_UNIT_STATES,
    MemberRole,
    MemberState,
    ReservationState,
    Spread,
    TopologyConstraint,
    UnitState,
)
from provisioning.placement.models import (
    CapacityReservation,
    ReservedServer,
    UnitMember,
    WorkloadUnit,
)
from provisioning.placement.selectors import candidates_for, network_paths
from provisioning.placement.solver import Candidate, Placement, Request, Unplaceable, solve
from tenants.choices import AuditAction
from tenants.errors import Conflict, FieldError, Invalid
from tenants.services import audit
from tenants.services.changes import ChangeContext, save_object
from tenants.sovereignty.services.assets import check_workload_inputs

if TYPE_CHECKING:
    from factory.catalog.models import UltraServerModel
    from factory.inventory.models import Site
    from tenants.models import Tenant

MAX_RESERVATION = 1000  # CapacityReservation.count's validator
MAX_UNIT = 256  # WorkloadUnit.size's validator
MAX_HOPS = 16

log = logging.getLogger(__name__)


class SolverContractError(RuntimeError):
    """The solver returned a placement it may not (a server with a problem, or the wrong
    size): a bug in the solver, never the caller's fault, so it is not a 4xx."""


# --- validation ---------------------------------------------------------------------------------


def _check_constraint(constraint: Any, max_hops: Any) -> None:
    if constraint not in TopologyConstraint.values:
        raise Invalid(
            f"choose one of {', '.join(TopologyConstraint.values)}",
            code="invalid_choice",
            field="constraint",
        )
    if constraint == TopologyConstraint.MAX_HOPS:
        if max_hops is None:
            raise Invalid("constraint max_hops needs max_hops", code="required", field="max_hops")
        if isinstance(max_hops, bool) or not isinstance(max_hops, int):
            raise Invalid("a whole number", code="invalid", field="max_hops")
        if not 0 <= max_hops <= MAX_HOPS:
            raise Invalid(f"from 0 to {MAX_HOPS}", code="out_of_range", field="max_hops")
    elif max_hops is not None:
        raise Invalid(
            "max_hops goes only with constraint max_hops",
            code="max_hops_without_constraint",
            field="max_hops",
        )


def _check_count(value: Any, field: str, largest: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("a whole number", code="invalid", field=field)
    if not 1 <= value <= largest:
        raise Invalid(f"from 1 to {largest}", code="out_of_range", field=field)


def _check_site(tenant: Tenant, site: Site) -> None:
    if site.tenant_id != tenant.pk:
        # Placement is on the tenant's own premises only (an UltraServer there is theirs).
        raise Invalid("not one of the tenant's sites", code="other_tenant", field="site")


# --- solving ------------------------------------------------------------------------------------


def _refusal(exc: Unplaceable, candidates: Sequence[Candidate], size: int, field: str) -> Conflict:
    """The 409 for an unplaceable request: ``code`` the rule it could not meet, the field
    ``count`` (``size``) when too few servers are usable at all, else ``constraint``."""
    usable = sum(1 for c in candidates if not c.problems)
    short = usable < size or exc.constraint in ("count", "size")
    named = field if short else "constraint"
    code = field if short else (exc.constraint or "constraint")
    reasons = list(exc.reasons) or [f"{usable} usable UltraServers, {size} needed"]
    return Conflict(
        "; ".join(reasons),
        code=code,
        errors=[FieldError(named, code, reason) for reason in reasons],
    )


def _explain(placement: Placement, candidates: Sequence[Candidate]) -> dict[str, Any]:
    """What is kept of a choice: the solver's explanation, the members by serial, and why
    every server not chosen was left out."""
    serial = {c.id: c.serial for c in candidates}
    excluded = {c.serial: "; ".join(c.problems) for c in candidates if c.problems}
    explanation = dict(placement.explanation or {})
    explanation.setdefault("members", [serial[m] for m in placement.members if m in serial])
    explanation.setdefault("leader", serial.get(placement.leader))
    explanation.setdefault("mean_hops", placement.mean_hops)
    explanation.setdefault("max_hops", placement.max_hops)
    explanation.setdefault("excluded", excluded)
    return explanation


def _solve(candidates: list[Candidate], request: Request, field: str) -> Placement:
    try:
        placement = solve(candidates, request)
    except Unplaceable as exc:
        raise _refusal(exc, candidates, request.size, field) from exc
    _check_contract(placement, candidates, request)
    return placement


def _check_contract(
    placement: Placement, candidates: Sequence[Candidate], request: Request
) -> None:
    """The solver's contract, checked where it is cheap (an explicit check, not an ``assert``
    that ``python -O`` would drop): only usable servers, exactly ``request.size`` of them."""
    usable = {c.id for c in candidates if not c.problems}
    bad = sorted(set(placement.members) - usable)
    if bad or len(set(placement.members)) != request.size:
        log.error(
            "solver broke its contract: members %s (unusable %s), %d wanted",
            list(placement.members),
            bad,
            request.size,
        )
        raise SolverContractError(
            f"the solver chose {len(placement.members)} servers ({len(bad)} unusable), "
            f"{request.size} wanted"
        )


# --- reservations -------------------------------------------------------------------------------


def reserve(
    tenant: Tenant,
    site: Site,
    model: UltraServerModel,
    count: int,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    constraint: str,
    max_hops: int | None,
    ctx: ChangeContext,
    name: str = "",
) -> CapacityReservation:
    """Hold ``count`` UltraServers of ``model`` at ``site`` for [starts_at, ends_at), chosen by
    the solver under ``constraint`` among the servers no overlapping reservation holds."""
    now = timezone.now()
    _check_site(tenant, site)
    _check_count(count, "count", MAX_RESERVATION)
    _check_constraint(constraint, max_hops)
    if starts_at >= ends_at:
        raise Invalid("ends after it starts", code="ends_before_start", field="ends_at")
    if ends_at <= now:
        raise Invalid("must be in the future", code="in_the_past", field="ends_at")
    if len(name) > 100:
        raise Invalid("at most 100 characters", code="max_length", field="name")
    with transaction.atomic():
        lock_capacity_scope(site_ids=[site.pk])
        candidates = candidates_for(
            site, tenant_id=tenant.pk, model_id=model.pk, at=starts_at, until=ends_at
        )
        request = Request(size=count, constraint=constraint, max_hops=max_hops)
        placement = _solve(candidates, request, "count")
        reservation = save_object(
            CapacityReservation(
                tenant=tenant,
                site=site,
                model=model,
                name=name,
                count=count,
                starts_at=starts_at,
                ends_at=ends_at,
                constraint=constraint,
                max_hops=max_hops,
                state=ReservationState.SCHEDULED if starts_at > now else ReservationState.ACTIVE,
                explanation=_explain(placement, candidates),
                created_by=ctx.actor.username,
            ),
            ctx,
        )
        _hold(reservation, placement.members, ctx)
    return reservation


def _hold(reservation: CapacityReservation, server_ids: Iterable[int], ctx: ChangeContext) -> None:
    rows = ReservedServer.objects.bulk_create(
        ReservedServer(
            reservation=reservation,
            ultraserver_id=pk,
            starts_at=reservation.starts_at,
            ends_at=reservation.ends_at,
        )
        for pk in server_ids
    )
    _audit_created(rows, ctx, reservation.tenant_id)


def _audit_created(rows: Sequence[Any], ctx: ChangeContext, tenant_id: int) -> None:
    """One audit event per row made in bulk, written in one insert."""
    audit.record_many(
        ((row, None, audit.snapshot(row)) for row in rows),
        actor=ctx.actor,
        action=AuditAction.CREATE,
        source=ctx.source,
        tenant_id=tenant_id,
        request_id=ctx.request_id,
        **ctx.attribution(),
    )


M = TypeVar("M", bound=models.Model)


def _locked(model: type[M], pk: int) -> M:
    return model._default_manager.select_for_update().get(pk=pk)


def _set_state(obj: M, state: str, reason: str, ctx: ChangeContext) -> M:
    obj.state = state  # type: ignore[attr-defined]
    obj.state_reason = reason[:500]  # type: ignore[attr-defined]
    return save_object(obj, ctx)


def cancel_reservation(
    reservation: CapacityReservation, ctx: ChangeContext, reason: str = ""
) -> CapacityReservation:
    """Give the servers back. A reservation that still has units in it is a 409 naming them:
    release the units first (cancelling does not take a running workload down)."""
    with transaction.atomic():
        lock_capacity_scope(site_ids=[reservation.site_id])
        reservation = _locked(CapacityReservation, reservation.pk)
        if reservation.state not in HOLDING_RESERVATION_STATES:
            raise Conflict(
                f"the reservation is {reservation.state}; only a scheduled or active one can "
                "be cancelled",
                code="reservation_not_cancellable",
                field="state",
            )
        units = list(
            reservation.units.filter(state__in=HOLDING_UNIT_STATES).values_list("name", flat=True)
        )
        if units:
            raise Conflict(
                f"units {', '.join(units)} still run in this reservation; release them first",
                code="reservation_in_use",
                field="units",
            )
        # The state first: an If-Match precondition is checked against the row as it stood.
        reservation = _set_state(
            reservation, ReservationState.CANCELLED, reason or "cancelled", ctx
        )
        reservation.holds.all().delete()
        return reservation


def _bulk_state(objs: Sequence[Any], state: str, reason: str, ctx: ChangeContext) -> None:
    """Move ``objs`` (rows of one model, locked by the caller) to ``state``: one update and one
    insert of their audit events, however many there are."""
    if not objs:
        return
    now = timezone.now()
    befores = [audit.snapshot(obj) for obj in objs]
    for obj in objs:
        obj.state, obj.state_reason, obj.updated_at = state, reason[:500], now
    type(objs[0]).objects.bulk_update(objs, ["state", "state_reason", "updated_at"])
    audit.record_many(
        ((obj, before, audit.snapshot(obj)) for obj, before in zip(objs, befores, strict=True)),
        actor=ctx.actor,
        action=AuditAction.UPDATE,
        source=ctx.source,
        request_id=ctx.request_id,
        **ctx.attribution(),
    )


def _release_units(units: Sequence[WorkloadUnit], reason: str, ctx: ChangeContext) -> None:
    _bulk_state(units, UnitState.RELEASED, reason, ctx)
    _release_members([u.pk for u in units], reason)


def _release_members(unit_ids: Sequence[int], reason: str) -> None:
    UnitMember.objects.filter(unit__in=unit_ids, state__in=HOLDING_MEMBER_STATES).update(
        state=MemberState.RELEASED, left_at=timezone.now(), state_reason=reason[:500]
    )


def _unusable_holds(reservation_ids: Sequence[int]) -> dict[int, list[int]]:
    """Reservation → its held servers that stopped being usable (health, lifecycle, fabric):
    one query for all of them. A workflow's hold is not counted here: it may end before the
    reservation starts."""
    from django.db.models import Exists, OuterRef, Q

    from factory.inventory.choices import ChipHealth, LifecycleState
    from factory.inventory.models import Chip

    failed_chip = Chip.objects.filter(ultraserver=OuterRef("ultraserver"), health=ChipHealth.FAILED)
    rows = (
        ReservedServer.objects.filter(reservation_id__in=reservation_ids)
        .filter(
            ~Q(ultraserver__lifecycle_state=LifecycleState.IN_SERVICE)
            | Q(ultraserver__in_maintenance=True)
            | Q(ultraserver__isolated_since__isnull=False)
            | Q(ultraserver__unreachable_since__isnull=False)
            | Q(ultraserver__network_node__isnull=True)
            | Exists(failed_chip)
        )
        .values_list("reservation_id", "ultraserver_id")
    )
    out: dict[int, list[int]] = {}
    for reservation_id, server_id in rows:
        out.setdefault(reservation_id, []).append(server_id)
    return out


class Reselected(enum.Enum):
    """What ``_reselect`` did to one reservation (the job counts each kind apart)."""

    SWAPPED = "swapped"  # it holds ``count`` usable servers again
    FAILED = "failed"  # not started yet and no replacement: failed, holds dropped
    SHORT = "short"  # starting now and no replacement: activated short, reason says so
    SKIPPED = "skipped"  # no longer scheduled (cancelled meanwhile): nothing done


def _reselect(
    reservation: CapacityReservation,
    lost: Sequence[int],
    ctx: ChangeContext,
    now: dt.datetime | None = None,
) -> Reselected:
    """Choose the reservation's servers again under its constraint, its healthy ones and free
    ones alike (it has not started: nothing runs on them, so moving them costs nothing).

    With no replacement, one that has not started fails (holds dropped: better told now than at
    its start); one whose start has come (``starts_at <= now``) is activated short instead,
    keeping its holds and naming the shortfall in ``state_reason``: the tenant paid for the
    block and can use what is usable; failing it at its start would take all of it away."""
    now = now or timezone.now()
    reservation = _locked(CapacityReservation, reservation.pk)
    if reservation.state != ReservationState.SCHEDULED or reservation.ends_at <= now:
        return Reselected.SKIPPED
    starting = reservation.starts_at <= now
    site = reservation.site
    candidates = [
        _without_own_hold(c, reservation.pk)
        for c in candidates_for(
            site,
            tenant_id=reservation.tenant_id,
            model_id=reservation.model_id,
            at=reservation.starts_at,
            until=reservation.ends_at,
        )
    ]
    request = Request(
        size=reservation.count, constraint=reservation.constraint, max_hops=reservation.max_hops
    )
    serial = {c.id: c.serial for c in candidates}
    why = {c.serial: "; ".join(c.problems) for c in candidates if c.id in set(lost)}
    try:
        placement = solve(candidates, request)
    except Unplaceable as exc:
        lost_text = ", ".join(f"{s} ({r})" for s, r in why.items())
        if starting:
            usable = reservation.count - len(set(lost))
            _set_state(
                reservation,
                ReservationState.ACTIVE,
                f"started short: {usable} of {reservation.count} servers usable; {lost_text} "
                f"stopped being usable and no replacement meets {reservation.constraint}: "
                f"{'; '.join(exc.reasons)}",
                ctx,
            )
            return Reselected.SHORT
        reservation.holds.all().delete()
        _set_state(
            reservation,
            ReservationState.FAILED,
            f"cannot be honoured: {lost_text} stopped being usable and no replacement meets "
            f"{reservation.constraint}: {'; '.join(exc.reasons)}",
            ctx,
        )
        return Reselected.FAILED
    _check_contract(placement, candidates, request)
    held = set(reservation.holds.values_list("ultraserver_id", flat=True))
    chosen = set(placement.members)
    reservation.holds.exclude(ultraserver_id__in=chosen).delete()
    _hold(reservation, sorted(chosen - held), ctx)
    explanation = _explain(placement, candidates)
    explanation["swaps"] = [
        *reservation.explanation.get("swaps", []),
        {
            "at": timezone.now().isoformat(),
            "out": sorted(serial.get(pk, str(pk)) for pk in held - chosen),
            "in": sorted(serial[pk] for pk in chosen - held),
            "why": why,
        },
    ]
    reservation.explanation = explanation
    save_object(reservation, ctx)
    return Reselected.SWAPPED


def _without_own_hold(candidate: Candidate, reservation_id: int) -> Candidate:
    own = f"held by reservation cr-{reservation_id}"
    if own not in candidate.problems:
        return candidate
    return Candidate(
        id=candidate.id,
        serial=candidate.serial,
        path=candidate.path,
        rack=candidate.rack,
        feeds=candidate.feeds,
        problems=tuple(p for p in candidate.problems if p != own),
    )


def advance_reservations(ctx: ChangeContext, now: dt.datetime | None = None) -> dict[str, int]:
    """The scheduled job: scheduled → active at the start, → expired at the end (holds dropped,
    units inside released); a scheduled reservation whose server stopped being usable before
    its start gets a replacement under its constraint, or fails with the reason; one whose
    start has come gets the same last check before it is activated (short, with the reason,
    when no replacement exists: see ``_reselect``). Idempotent (a second run at the same time
    changes nothing; rows another run holds are left for the next run). A fixed number of
    queries, plus a few per reservation that needs a swap."""
    now = now or timezone.now()
    summary = {"activated": 0, "expired": 0, "swapped": 0, "failed": 0}
    with transaction.atomic():
        ending = list(
            CapacityReservation.objects.select_for_update(skip_locked=True).filter(
                state__in=HOLDING_RESERVATION_STATES, ends_at__lte=now
            )
        )
        ending_ids = [r.pk for r in ending]
        units = list(
            WorkloadUnit.objects.select_for_update(skip_locked=True).filter(
                reservation__in=ending_ids, state__in=HOLDING_UNIT_STATES
            )
        )
        # A unit another transaction holds (a release, a replacement) was skipped: its
        # reservation waits for the next run rather than expiring with an active unit in it.
        locked = {u.pk for u in units}
        busy = set(
            WorkloadUnit.objects.filter(reservation__in=ending_ids, state__in=HOLDING_UNIT_STATES)
            .exclude(pk__in=locked)
            .values_list("reservation_id", flat=True)
        )
        ending = [r for r in ending if r.pk not in busy]
        units = [u for u in units if u.reservation_id not in busy]
        _release_units(units, "its reservation expired", ctx)
        ReservedServer.objects.filter(reservation__in=[r.pk for r in ending]).delete()
        _bulk_state(ending, ReservationState.EXPIRED, "ended", ctx)
        summary["expired"] = len(ending)

    # Scheduled ones, those still waiting and those whose start has come alike: the last check.
    scheduled = CapacityReservation.objects.filter(
        state=ReservationState.SCHEDULED, ends_at__gt=now
    ).values_list("pk", flat=True)
    broken = _unusable_holds(list(scheduled))
    for reservation in CapacityReservation.objects.filter(pk__in=list(broken)).order_by("pk"):
        with transaction.atomic():
            lock_capacity_scope(site_ids=[reservation.site_id])
            outcome = _reselect(reservation, broken[reservation.pk], ctx, now=now)
            if outcome is Reselected.SWAPPED:
                summary["swapped"] += 1
            elif outcome is Reselected.FAILED:
                summary["failed"] += 1
            elif outcome is Reselected.SHORT:
                summary["activated"] += 1

    with transaction.atomic():
        starting = list(
            CapacityReservation.objects.select_for_update(skip_locked=True).filter(
                state=ReservationState.SCHEDULED, starts_at__lte=now, ends_at__gt=now
            )
        )
        _bulk_state(starting, ReservationState.ACTIVE, "started", ctx)
        summary["activated"] += len(starting)
    return summary


# --- units --------------------------------------------------------------------------------------


def _check_inputs(inputs: Any) -> list[int]:
    if not isinstance(inputs, list | tuple) or any(
        isinstance(i, bool) or not isinstance(i, int) for i in inputs
    ):
        raise Invalid("a list of asset ids", code="invalid", field="inputs")
    if len(inputs) > 100:
        raise Invalid("at most 100 inputs", code="too_many", field="inputs")
    return list(inputs)


def place_unit(
    tenant: Tenant,
    site: Site,
    name: str,
    size: int,
    constraint: str,
    max_hops: int | None,
    spread: str,
    inputs: Sequence[int],
    ctx: ChangeContext,
    reservation: CapacityReservation | None = None,
    max_unavailable: int = 0,
    model: UltraServerModel | None = None,
    auto_replace: bool = False,
) -> WorkloadUnit:
    """Place a leader/follower unit of ``size`` UltraServers of one ``model``: its inputs pass
    the tenant's sovereignty rules first (a denial is a 403, recorded), then the solver chooses
    members among the usable servers (inside ``reservation`` if given) under ``constraint``.

    ``model`` is required from free capacity (a unit is of one kind: its members must run the
    same thing); inside a reservation it defaults to the reservation's and must equal it."""
    _check_site(tenant, site)
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise Invalid("1 to 100 characters", code="invalid", field="name")
    _check_count(size, "size", MAX_UNIT)
    _check_constraint(constraint, max_hops)
    if spread not in Spread.values:
        raise Invalid(
            f"choose one of {', '.join(Spread.values)}", code="invalid_choice", field="spread"
        )
    if isinstance(max_unavailable, bool) or not isinstance(max_unavailable, int):
        raise Invalid("a whole number", code="invalid", field="max_unavailable")
    if not 0 <= max_unavailable <= size:
        raise Invalid(f"from 0 to {size}", code="out_of_range", field="max_unavailable")
    if not isinstance(auto_replace, bool):
        raise Invalid("true or false", code="invalid", field="auto_replace")
    asset_ids = _check_inputs(inputs)
    if reservation is not None and (
        reservation.tenant_id != tenant.pk or reservation.site_id != site.pk
    ):
        raise Invalid(
            "not a reservation of this tenant at this site",
            code="other_site",
            field="reservation",
        )
    if model is None:
        if reservation is None:
            raise Invalid(
                "the UltraServer model of the unit's members (or a reservation)",
                code="required",
                field="model",
            )
        model_id = reservation.model_id
    elif reservation is not None and model.pk != reservation.model_id:
        raise Invalid("not the model of the reservation", code="model_mismatch", field="model")
    else:
        model_id = model.pk
    # Before any capacity is given: a denial raises here and its record is kept (outside the
    # transaction that would place the unit).
    check_workload_inputs(asset_ids, site, ctx)
    with transaction.atomic():
        lock_capacity_scope(site_ids=[site.pk])
        if (
            WorkloadUnit.objects.filter(tenant=tenant, name=name)
            .exclude(state=UnitState.RELEASED)
            .exists()
        ):
            raise Conflict(
                f"the tenant already has a unit named {name!r}",
                code="unit_name_taken",
                field="name",
            )
        if reservation is not None:
            reservation = _locked(CapacityReservation, reservation.pk)
            if reservation.state != ReservationState.ACTIVE:
                raise Conflict(
                    f"the reservation is {reservation.state}; a unit goes into an active one",
                    code="reservation_not_active",
                    field="reservation",
                )
        # Inside a reservation the unit needs its servers until the reservation ends (a later
        # back-to-back reservation on the same server does not take it from this one).
        candidates = candidates_for(
            site,
            tenant_id=tenant.pk,
            model_id=model_id,
            reservation=reservation,
            at=timezone.now(),
            until=reservation.ends_at if reservation is not None else None,
        )
        request = Request(size=size, constraint=constraint, max_hops=max_hops, spread=spread)
        placement = _solve(candidates, request, "size")
        try:
            # A savepoint: a concurrent insert that took the name or a server (the check above
            # runs under this site's lock only) is a 409, and nothing of the unit is written.
            with transaction.atomic():
                unit = _insert_unit(
                    WorkloadUnit(
                        tenant=tenant,
                        site=site,
                        reservation=reservation,
                        model_id=model_id,
                        auto_replace=auto_replace,
                        name=name,
                        size=size,
                        constraint=constraint,
                        max_hops=max_hops,
                        spread=spread,
                        inputs=asset_ids,
                        max_unavailable=max_unavailable,
                        explanation=_explain(placement, candidates),
                        created_by=ctx.actor.username,
                    ),
                    placement,
                    ctx,
                )
        except IntegrityError as exc:
            raise _insert_conflict(exc, name) from exc
    return unit


def _insert_unit(unit: WorkloadUnit, placement: Placement, ctx: ChangeContext) -> WorkloadUnit:
    unit = save_object(unit, ctx)
    members = UnitMember.objects.bulk_create(
        UnitMember(
            unit=unit,
            ultraserver_id=pk,
            role=MemberRole.LEADER if pk == placement.leader else MemberRole.FOLLOWER,
        )
        for pk in placement.members
    )
    _audit_created(members, ctx, unit.tenant_id)
    return unit


def _insert_conflict(exc: IntegrityError, name: str) -> Conflict:
    """The 409 for a unique constraint a concurrent transaction won; anything else re-raised."""
    constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
    if constraint == "unit_name_unique_per_tenant":
        return Conflict(
            f"the tenant already has a unit named {name!r}", code="unit_name_taken", field="name"
        )
    if constraint == "unit_member_one_unit_at_a_time":
        return Conflict(
            "a chosen UltraServer was taken by another unit meanwhile; try again",
            code="member_taken",
            field="size",
        )
    raise exc


def release_unit(unit: WorkloadUnit, ctx: ChangeContext, reason: str = "") -> WorkloadUnit:
    """End the unit: its members go back to free capacity (or to its reservation)."""
    with transaction.atomic():
        lock_capacity_scope(site_ids=[unit.site_id])
        unit = _locked(WorkloadUnit, unit.pk)
        if unit.state not in HOLDING_UNIT_STATES:
            raise Conflict("the unit is already released", code="unit_released", field="state")
        # Through save_object first: an If-Match precondition is checked on the unit as it was.
        unit = _set_state(unit, UnitState.RELEASED, reason or "released", ctx)
        _release_members([unit.pk], unit.state_reason)
    return unit


def member_distances(unit: WorkloadUnit) -> dict[int, int | None]:
    """Member id → hops to the unit's leader (0 for the leader), over the site's fabric now."""
    members = [m for m in unit.members.all() if m.state in HOLDING_MEMBER_STATES]
    paths = network_paths(unit.site_id)
    node = {m.pk: m.ultraserver.network_node_id for m in members}
    leader = next((m for m in members if m.role == MemberRole.LEADER), None)
    out: dict[int, int | None] = {}
    for m in members:
        if leader is None:
            out[m.pk] = None
        elif m.pk == leader.pk:
            out[m.pk] = 0
        else:
            mine, theirs = node[m.pk], node[leader.pk]
            a = paths.get(mine) if mine is not None else None
            b = paths.get(theirs) if theirs is not None else None
            out[m.pk] = topology.hops(a, b) if a and b else None
    return out
