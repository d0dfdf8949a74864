"""Faults: raised by the health rules (or by people), one open per subject and rule.

Each fault takes its rule's severity and action from the policy in force (``policy``, the
wire contract's defaults and the ``FACTORY_FAULT_POLICY`` setting) when it opens. A new fault
on a server whose rule drains it sets the maintenance flag and, after commit, announces itself
with the ``fault_opened`` signal; the workflow engine (which this app may not import) listens,
opens a maintain workflow and writes what became of it on the fault (``set_action``). Its
health sweep catches any the signal missed, and moves a fault waiting at a capacity floor on
when the floor allows. A leak does not wait for that: ``isolation`` powers its server off in
the transaction that opens the fault. A rule that only records (a warning: throttling, a
server or agent not heard from) neither flags nor drains anything.

Every fault opened and every fault resolved is an event of the site's tenant
(``fault.opened``, ``fault.resolved``), written here, in the transaction that opens or clears
it: ``_open`` and ``_clear`` are the only places that do either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.dispatch import Signal
from django.utils import timezone

from factory.inventory.choices import ChipHealth
from factory.inventory.models import Chip, UltraServer
from factory.inventory.services import transition
from factory.telemetry import isolation, policy
from factory.telemetry.choices import FaultAction
from factory.telemetry.models import Fault
from factory.telemetry.rules import Finding
from factory.wire import ISOLATING_RULES, ISOLATION_RESET_TYPE, FaultRule, RuleAction
from tenants.access import SYSTEM
from tenants.choices import AuditCause, AuditSource
from tenants.events.kinds import EventKind, timestamp
from tenants.events.services import emit
from tenants.services.changes import ChangeContext, save_object

log = logging.getLogger(__name__)

RULES_CTX = ChangeContext(actor=SYSTEM, source=AuditSource.SYSTEM)

# sender=Fault, faults=[Fault] (new server faults, after commit)
fault_opened = Signal()

CHIP_RULES = frozenset({FaultRule.CHIP_DOWN, FaultRule.ECC_UNCORRECTABLE})
#: The actions of a fault that asked for maintenance: what the workflow engine may rewrite as
#: it opens, finds held, or is refused a maintain workflow (an isolated or recorded fault keeps
#: its action).
MAINTAIN_ACTIONS = (FaultAction.MAINTENANCE, FaultAction.HELD, FaultAction.WAITING_FLOOR)
OPENING = "maintenance flag set; maintain workflow being opened"


def server_key(rule: str, server_id: int, chip: int | None) -> str:
    return f"{rule}:us{server_id}:c{'-' if chip is None else chip}"


def site_key(rule: str, subject: str) -> str:
    return f"{rule}:{subject}"


def _open(site_id: int, candidates: list[Fault]) -> list[Fault]:
    """Create the faults whose key has no open fault yet; returns those created."""
    if not candidates:
        return []
    keys = {f.key for f in candidates}
    already = set(
        Fault.objects.filter(site_id=site_id, key__in=keys, cleared_at__isnull=True).values_list(
            "key", flat=True
        )
    )
    new, seen = [], set(already)
    for fault in candidates:
        if fault.key not in seen:
            seen.add(fault.key)
            _apply_policy(fault)
            new.append(fault)
    if not new:
        return []
    created = []
    with transaction.atomic(savepoint=False):  # the caller's transaction, when there is one
        for fault in new:
            # A concurrent batch may open the same key: the partial unique index keeps its
            # fault, and that batch (not this one) flags the server and tells the tenant.
            try:
                with transaction.atomic():
                    fault.save(force_insert=True)
            except IntegrityError:
                continue
            created.append(fault.pk)
        opened = list(
            Fault.objects.filter(pk__in=created)
            .select_related("site", "ultraserver")
            .order_by("pk")
        )
        for fault in opened:
            data = _event_data(fault)
            emit(EventKind.FAULT_OPENED, fault, tenant=fault.site.tenant_id, data=data)
    return opened


def _apply_policy(fault: Fault) -> None:
    """The severity and first action of a fault about to open, from its rule's policy."""
    rule = policy.of(fault.rule)
    fault.severity = rule.severity.value
    if rule.action is RuleAction.RECORD:
        fault.action, fault.action_detail = FaultAction.RECORDED, ""
    elif fault.ultraserver_id is None:
        fault.action = FaultAction.RECORDED
        fault.action_detail = "a site's fault: no server of its own to take out of service"
    elif rule.action is RuleAction.ISOLATE:
        fault.action = FaultAction.ISOLATED
        fault.action_detail = f"powered off at once ({ISOLATION_RESET_TYPE}); maintenance follows"
    else:
        fault.action, fault.action_detail = FaultAction.MAINTENANCE, OPENING


def set_action(faults: QuerySet[Fault], action: str, detail: str) -> int:
    """Write what became of the open ones among ``faults`` (the workflow engine's outcome:
    a maintain workflow opened, the server held by another, a refused drain's words), so the
    fault says it rather than a log line."""
    return faults.filter(cleared_at__isnull=True).update(action=action, action_detail=detail[:500])


def _event_data(fault: Fault, **more: Any) -> dict[str, Any]:
    server = fault.ultraserver
    return {
        "rule": fault.rule,
        "severity": fault.severity,
        "detail": fault.detail,
        "site": fault.site.code,
        "server": server.serial if server is not None else None,
        "chip": fault.chip_index,
        "opened_at": timestamp(fault.opened_at),
        **more,
    }


def _clear(faults: QuerySet[Fault], reason: str) -> int:
    """Clear the open faults among ``faults``, each one a ``fault.resolved`` event. Rows are
    locked first: of two clearing the same fault at once, the second finds it cleared and says
    nothing."""
    reason = reason[:200]
    with transaction.atomic(savepoint=False):  # ingest's own transaction, when there is one
        closing = list(
            faults.filter(cleared_at__isnull=True)
            .select_for_update(of=("self",))
            .select_related("site", "ultraserver")
        )
        if not closing:
            return 0
        now = timezone.now()
        Fault.objects.filter(pk__in=[f.pk for f in closing]).update(
            cleared_at=now, cleared_reason=reason
        )
        for fault in closing:
            fault.cleared_at, fault.cleared_reason = now, reason
            emit(
                EventKind.FAULT_RESOLVED,
                fault,
                tenant=fault.site.tenant_id,
                data=_event_data(fault, reason=reason, cleared_at=timestamp(now)),
            )
        isolation.lift(closing)
    return len(closing)


def raise_findings(
    site_id: int, server_findings: list[tuple[int, Finding]], site_findings: list[Finding]
) -> int:
    candidates = [
        Fault(
            site_id=site_id,
            ultraserver_id=server_id,
            chip_index=f.chip,
            rule=f.rule,
            key=server_key(f.rule, server_id, f.chip),
            detail=f.detail[:500],
        )
        for server_id, f in server_findings
    ]
    candidates += [
        Fault(site_id=site_id, rule=f.rule, key=site_key(f.rule, f.subject), detail=f.detail[:500])
        for f in site_findings
    ]
    opened = _open(site_id, candidates)
    # Only what the policy says drains: a recorded fault (a warning) flags nothing.
    on_servers = [f for f in opened if f.ultraserver_id and f.action != FaultAction.RECORDED]
    flagged = set()
    for fault in on_servers:
        flag_server(fault, flag=fault.ultraserver_id not in flagged)
        flagged.add(fault.ultraserver_id)
    # A leak powers its server off now, in this transaction: no drain, window or person first.
    isolation.isolate([f for f in on_servers if f.action == FaultAction.ISOLATED])
    if on_servers:
        transaction.on_commit(lambda: _announce(on_servers))
    return len(opened)


def flag_server(fault: Fault, *, flag: bool = True) -> None:
    """The maintenance flag and the reason on the server (once per batch), a broken chip marked
    failed. Through the inventory's audited paths, like any other change to them. ``fault`` is
    a server's fault (``ultraserver_id`` set)."""
    server_id = fault.ultraserver_id
    assert server_id is not None, "flag_server takes a server's fault"
    ctx = RULES_CTX.caused_by(AuditCause.RULE, fault.pk)  # audited as caused by this fault
    if flag:
        state = UltraServer.objects.values_list("lifecycle_state", flat=True).get(pk=server_id)
        transition(
            server_id,
            state,
            ctx,
            fields={"in_maintenance": True, "fault_reason": fault.detail[:500]},
        )
    if fault.rule in CHIP_RULES and fault.chip_index is not None:
        chip = Chip.objects.filter(ultraserver_id=server_id, index=fault.chip_index).first()
        if chip is not None and chip.health != ChipHealth.FAILED:
            chip.health, chip.health_note = ChipHealth.FAILED, fault.detail[:500]
            save_object(chip, ctx)


def _announce(opened: list[Fault]) -> None:
    try:
        fault_opened.send(sender=Fault, faults=opened)
    except Exception:  # the health sweep retries; a receiver must not fail ingest
        log.exception("fault_opened receiver failed")


def record(server: UltraServer, rule: str, detail: str, chip: int | None = None) -> Fault | None:
    """A fault someone reported (API): recorded once, like the rules' own, with its rule's
    severity and action; the caller flags and maintains the server (``report_fault``)."""
    rack = server.rack  # None without a query when rack_id is None
    if rack is None:
        return None
    opened = _open(
        rack.site_id,
        [
            Fault(
                site_id=rack.site_id,
                ultraserver=server,
                chip_index=chip,
                rule=rule,
                key=server_key(rule, server.pk, chip),
                detail=detail[:500],
            )
        ],
    )
    return opened[0] if opened else None


def clear_keys(site_id: int, keys: list[str], reason: str) -> int:
    if not keys:
        return 0
    return _clear(Fault.objects.filter(site_id=site_id, key__in=keys), reason)


def clear_keys_everywhere(site_ids: Iterable[int], key: str, reason: str) -> int:
    return _clear(Fault.objects.filter(site_id__in=list(site_ids), key=key), reason)


def clear_isolating(server_id: int, reason: str) -> int:
    """The server's leak (isolating) faults closed: the repair is done, so its isolation lifts
    (``isolation.lift``) and it may be powered on again."""
    return _clear(
        Fault.objects.filter(ultraserver_id=server_id, rule__in=list(ISOLATING_RULES)), reason
    )


def clear_server(server_id: int, reason: str) -> int:
    """Back in service after maintenance: the server's faults are closed."""
    return _clear(Fault.objects.filter(ultraserver_id=server_id), reason)
