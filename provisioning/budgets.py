"""Disruption budgets: how many in-service UltraServers a site may still lose, right now.

The tenant's capacity floor (``CapacityFloor``) bounds the servers in service at a site. A check
that only counts servers in service is not enough: a workflow that will drain a server has not
drained it yet, and two requests that each see room for one would both pass. So the room is
*in service, minus those already claimed by active workflows that take servers out, minus the
floor*, read under the site's row lock (``lock_capacity_scope``: site rows, then rack rows), in
the same transaction that claims the servers:

- a **maintain** claims all of its servers when it is created (or started, when proposed): its
  steps start at once, or at the next window, and nothing checks again;
- an **upgrade** claims its servers batch by batch, when ``rollout._start_batch`` starts one
  (its pending servers are not claimed: the batch start checks the room then, and waits while
  there is none);
- a **deploy** takes nothing out: it starts only from ``planned`` / ``install-failed``
  (``services.DEPLOYABLE``), never from ``in-service``.

The per-domain limit (``max_unavailable_per_domain``, a workflow's own spec) is applied when each
batch starts, for every kind: ``_start_batch`` counts the workflow's own batch, and
``fit_batch`` adds the servers the site's other workflows have in flight in the same racks and
feeds, under the site's lock.

On SQLite (``make up``'s embedded default) ``select_for_update`` is a no-op; its IMMEDIATE
transactions serialize the writers instead, so the same reads stay correct there.

The **failure budget** (a workflow's ``max_failures`` / ``max_failure_pct``) is counted here too,
one way for every reader (``rollout.advance`` and ``rollout.hold_for_budget``, ``services.resume``
acknowledging the failures so far, ``attention``'s "paused by its failure budget"): a server has
failed once its target failed or was rolled back, or while a step of it has failed and its
rollback runs. Counted otherwise by any one of them, a resume during a rollback would see that
server's end as a new failure and pause again at once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from factory.inventory import lifecycle
from factory.inventory.models import PowerFeed, Site, UltraServer
from factory.inventory.models.locking import lock_capacity_scope
from provisioning.choices import ACTIVE_WORKFLOW_STATES, StepState, TargetState, WorkflowKind
from provisioning.history import event
from provisioning.models import CapacityFloor, Step, Workflow, WorkflowTarget
from tenants.errors import Conflict

#: Kinds whose servers are claimed when the workflow is created (or started).
CLAIMED_AT_CREATION = frozenset({WorkflowKind.MAINTAIN})
#: Kinds whose servers are claimed batch by batch, when each batch starts.
CLAIMED_AT_BATCH = frozenset({WorkflowKind.UPGRADE})
#: Every kind that takes in-service servers out (deploy never does).
TAKES_OUT = CLAIMED_AT_CREATION | CLAIMED_AT_BATCH


@dataclass(frozen=True)
class Room:
    """A site's disruption budget as read under its lock."""

    site_code: str
    floor: int | None  # None: the tenant set no floor here
    in_service: int
    claimed: int  # in service, but held by an active workflow that will take them out

    @property
    def free(self) -> int | None:
        """How many more in-service servers may be taken out now (``None``: no limit)."""
        if self.floor is None:
            return None
        return max(0, self.in_service - self.claimed - self.floor)

    @property
    def waiting_reason(self) -> str:
        return f"waiting: capacity floor ({self.in_service} in service, floor {self.floor})"

    def refusal(self, taken: int) -> Conflict:
        left = self.in_service - self.claimed - taken
        claimed = (
            f", {self.claimed} of them already claimed by active workflows" if self.claimed else ""
        )
        return Conflict(
            f"taking {taken} UltraServers out at {self.site_code} would leave {left} in service, "
            f"below the tenant's capacity floor of {self.floor} ({self.in_service} in service"
            f"{claimed}; room for {self.free})",
            code="capacity_floor",
            field="targets",
        )


def _claims() -> QuerySet[WorkflowTarget]:
    """Active targets that hold their (in-service) server for being taken out: a running one
    of any such kind (a batch in flight, not yet drained), or a pending one of a kind that
    claims at creation."""
    return WorkflowTarget.objects.filter(
        ultraserver=OuterRef("pk"),
        active=True,
        workflow__state__in=ACTIVE_WORKFLOW_STATES,
        workflow__kind__in=TAKES_OUT,
    ).filter(
        Q(state=TargetState.RUNNING)
        | Q(state=TargetState.PENDING, workflow__kind__in=CLAIMED_AT_CREATION)
    )


def room(site: Site) -> Room:
    """The site's room above its floor, read under the site's row lock (held until the
    caller's transaction ends; outside one nothing is locked). Servers in service and the
    claimed ones among them are counted in one statement (one snapshot): a server whose drain
    commits in between is never counted as in service yet no longer claimed."""
    lock_capacity_scope(site_ids=[site.pk])
    floor = CapacityFloor.objects.filter(site_id=site.pk).values_list("min_in_service", flat=True)
    counts = UltraServer.objects.filter(
        rack__site_id=site.pk, lifecycle_state=lifecycle.IN_SERVICE
    ).aggregate(in_service=Count("pk"), claimed=Count("pk", filter=Exists(_claims())))
    return Room(site.code, floor.first(), counts["in_service"], counts["claimed"])


def claim(site: Site, kind: str, servers: Iterable[UltraServer]) -> None:
    """Refuse (409 ``capacity_floor``, naming the floor and the numbers) a workflow of ``kind``
    that claims its servers now and would take the site below its floor. Call inside the
    transaction that writes the claim (the workflow's targets), before writing anything."""
    if kind not in CLAIMED_AT_CREATION:
        return
    if not CapacityFloor.objects.filter(site_id=site.pk).exists():
        return
    budget = room(site)
    taken = UltraServer.objects.filter(  # read under the lock
        pk__in=[s.pk for s in servers], lifecycle_state=lifecycle.IN_SERVICE
    ).count()
    if taken and budget.free is not None and taken > budget.free:
        raise budget.refusal(taken)


def fit_batch(workflow: Workflow, chosen: list[WorkflowTarget]) -> tuple[list[WorkflowTarget], str]:
    """A batch about to start, cut to what the site's budgets leave room for now, counting the
    servers other workflows have out: the per-domain limit (``max_unavailable_per_domain``: no
    more than that many out per rack or feed, whichever workflow took them) and, for kinds
    claimed batch by batch, the room above the floor (servers not in service cost it nothing).
    ``chosen`` comes from the workflow's own rules (its own per-domain count, units); targets
    carry their ``ultraserver``. Returns the batch, and ``"waiting-floor"`` /
    ``"waiting-domain"`` when nothing of it may start: the workflow then says why
    (``state_reason``, an event, once) and the next advance (the reconciler's, or a finishing
    server's) tries again; nothing fails. Call in the batch start's transaction, which holds the
    workflow's row lock; the site's is taken here, after it (the order ``services.start`` uses
    too), so two batch starts at one site, or a batch start and a maintain, are serialized."""
    if workflow.kind not in TAKES_OUT or not chosen:
        return chosen, ""
    lock_capacity_scope(site_ids=[workflow.site_id])
    kept, status, reason = chosen, "", ""
    limit = int(workflow.spec.get("max_unavailable_per_domain", 0))
    if limit:
        kept, reason = _within_domains(workflow, kept, limit)
        status = "waiting-domain"
    if (
        kept
        and workflow.kind in CLAIMED_AT_BATCH
        and CapacityFloor.objects.filter(site_id=workflow.site_id).exists()
    ):
        kept, reason = _within_floor(workflow, kept)
        status = "waiting-floor"
    if kept:
        return kept, ""
    if workflow.state_reason != reason:
        workflow.state_reason = reason
        workflow.save(update_fields=["state_reason", "updated_at"])
        event(workflow.pk, status, reason)
    return [], status


def _within_floor(
    workflow: Workflow, chosen: list[WorkflowTarget]
) -> tuple[list[WorkflowTarget], str]:
    budget = room(workflow.site)
    allowance = budget.free or 0
    serving = set(  # read again under the lock: what was loaded before it may be stale
        UltraServer.objects.filter(
            pk__in=[t.ultraserver_id for t in chosen], lifecycle_state=lifecycle.IN_SERVICE
        ).values_list("pk", flat=True)
    )
    kept = []
    for target in chosen:
        if target.ultraserver_id in serving:
            if allowance <= 0:
                continue
            allowance -= 1
        kept.append(target)
    return kept, budget.waiting_reason


def _within_domains(
    workflow: Workflow, chosen: list[WorkflowTarget], limit: int
) -> tuple[list[WorkflowTarget], str]:
    """``chosen`` without the servers whose rack or feeds already have ``limit`` out, counting
    the in-flight servers of the site's other active workflows that take servers out."""
    others = list(
        WorkflowTarget.objects.filter(
            active=True,
            state=TargetState.RUNNING,
            workflow__state__in=ACTIVE_WORKFLOW_STATES,
            workflow__kind__in=TAKES_OUT,
            ultraserver__rack__site_id=workflow.site_id,
        )
        .exclude(workflow_id=workflow.pk)
        .values_list("ultraserver__rack_id", "ultraserver__rack__name")
    )
    if not others:
        return chosen, ""
    racks = {t.ultraserver.rack_id for t in chosen} | {rack_id for rack_id, _ in others}
    racks.discard(None)
    feeds: dict[int | None, list[int]] = defaultdict(list)
    for feed_id, rack_id in PowerFeed.objects.filter(rack_id__in=list(racks)).values_list(
        "id", "rack_id"
    ):
        feeds[rack_id].append(feed_id)

    def domains(rack_id: int | None) -> list[str]:
        return [f"rack:{rack_id}", *(f"feed:{f}" for f in feeds[rack_id])]

    in_use: Counter[str] = Counter()
    for rack_id, _ in others:
        in_use.update(domains(rack_id))
    kept = []
    for target in chosen:
        mine = domains(target.ultraserver.rack_id)
        if any(in_use[d] >= limit for d in mine):
            continue
        in_use.update(mine)
        kept.append(target)
    full = sorted({name for rack_id, name in others if in_use[f"rack:{rack_id}"] >= limit})
    return kept, (
        f"waiting: per-domain limit ({limit} out per rack or feed; other workflows have "
        f"servers out in {', '.join(full[:5]) or 'its racks'})"
    )


# --- The failure budget --------------------------------------------------------------------

#: The spec key holding the failures a resume acknowledged: the budget applies to new ones.
ACKNOWLEDGED = "failures_acknowledged"


def failed_targets(workflow_ids: Iterable[int]) -> QuerySet[WorkflowTarget]:
    """The targets of these workflows that count against the failure budget: failed, rolled
    back, or running with a failed step (its rollback in progress: the failure has happened)."""
    rolling_back = Exists(Step.objects.filter(target=OuterRef("pk"), state=StepState.FAILED))
    return WorkflowTarget.objects.filter(workflow_id__in=list(workflow_ids)).filter(
        Q(state__in=[TargetState.FAILED, TargetState.ROLLED_BACK])
        | Q(rolling_back, state=TargetState.RUNNING)
    )


def failed_serials(workflow_ids: Iterable[int]) -> dict[int, list[str]]:
    """Each workflow's failed servers by serial, sorted (one query for a page of them)."""
    serials: dict[int, list[str]] = defaultdict(list)
    for workflow_id, serial in (
        failed_targets(workflow_ids)
        .order_by("workflow_id", "ultraserver__serial")
        .values_list("workflow_id", "ultraserver__serial")
    ):
        serials[workflow_id].append(serial)
    return serials


def failure_count(workflow: Workflow) -> int:
    return failed_targets([workflow.pk]).count()


def new_failures(spec: Mapping[str, Any], failed: int) -> int:
    """Failures since the last resume (which acknowledged those before it)."""
    return failed - int(spec.get(ACKNOWLEDGED, 0))


def budget_exceeded(spec: Mapping[str, Any], failed: int, total: int) -> bool:
    """More new failures than the budget allows: the rollout pauses (``rollout.advance``)."""
    new = new_failures(spec, failed)
    if new <= 0 or not total:
        return False
    max_failures, max_pct = spec.get("max_failures"), spec.get("max_failure_pct")
    return (max_failures is not None and new > int(max_failures)) or (
        max_pct is not None and 100.0 * new / total > float(max_pct)
    )


def budget_reached(spec: Mapping[str, Any], failed: int, total: int) -> bool:
    """The budget is used up: one more failure would exceed it, so the risky steps still to
    start in the batch in flight are held (``rollout.hold_for_budget``)."""
    return new_failures(spec, failed) > 0 and budget_exceeded(spec, failed + 1, total)
