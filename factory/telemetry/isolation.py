"""Isolation: a server with a critical fault (a coolant leak) is powered off at once.

HARDWARE.md: a leak is the most urgent fault there is; isolate the affected server at once,
then repair; do not wait for a maintenance window. So no drain, no window and no approval is
waited for: in the transaction that opens the fault, the site's agent is sent a
``ComputerSystem.Reset`` with ``ForceOff`` (the BMC cuts the power; every BMC offers it, where
an OS shutdown or a per-tray power domain is not standard), the server is marked isolated with
the reason, and its tenant is told (``server.isolated``). Then the ordinary maintain workflow
the fault opens takes over the repair, and nothing here waits for it.

Exactly once per open fault: ``isolate`` is given only faults this transaction created, and a
fault's key is unique while it is open (a partial unique index), so a repeated or concurrent
leak event for the same server opens no second fault and sends no second command.

The sovereignty engine decides which people may touch a site's hardware; here no person does.
The BMC powers itself off on the control plane's word, so nothing is asked of the engine, and
the audit log records the command as the system's, requested by the fault (``fault:<id>``).

Pending until confirmed: the server's ``isolation_reason`` begins "power-off pending" until the
agent reports the power-off done ("powered off"). A power-off that fails or expires is sent
again (``settle``, on ``command_finished``), up to ``POWER_OFF_ATTEMPTS``, and the fault's
detail says the isolation is not confirmed. While isolated, the command queue refuses the
server everything but the power-off and reads (``agents.submit``: 409 ``isolated``), so no
workflow step can power it back on before its fault is cleared.

Which servers: a leak reported by a server's BMC (a tray's or manifold's LeakDetector) isolates
that server; one at a rack or a CDU isolates every server it cools (``cooled_by``), each with a
leak fault of its own, so each is repaired, returned and un-isolated on its own.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from factory import wire
from factory.agents import services as agents
from factory.agents.choices import OPEN_STATES, CommandState
from factory.agents.models import AgentCommand
from factory.catalog.choices import Cooling
from factory.inventory import lifecycle
from factory.inventory.models import Rack, UltraServer
from factory.inventory.services import transition_locked
from factory.telemetry.models import DeviceReading, Fault
from tenants.access import SYSTEM
from tenants.choices import AuditSource
from tenants.events.kinds import EventKind, timestamp
from tenants.events.services import emit
from tenants.services import audit
from tenants.services.changes import ChangeContext

log = logging.getLogger(__name__)
ISOLATION_CTX = ChangeContext(actor=SYSTEM, source=AuditSource.SYSTEM)
#: How long the agent has to cut the power; a power-off is seconds on any BMC.
POWER_OFF_TIMEOUT_SECONDS = 120
#: Power-offs per isolation: the first, and re-sent while one fails or expires, up to this.
POWER_OFF_ATTEMPTS = 3
#: The isolation's status, first in the server's ``isolation_reason``.
PENDING, CONFIRMED, NOT_CONFIRMED_STATUS = (
    "power-off pending",
    "powered off",
    "power-off not confirmed",
)
#: Between a fault's detail and the note on its unconfirmed isolation.
NOT_CONFIRMED = " | isolation not confirmed: "


def cooled_by(site_id: int, source: str, device_kind: str | None = None) -> list[int] | None:
    """The servers a leak at ``source`` (not a server's own BMC) puts at risk, or None when
    the source is unknown (its leak stays a site fault: nothing tells which servers it is near).

    - A rack's detector (the rack, or its PDUs' source) → the servers in that rack.
    - A CDU (the event says ``device_kind`` cdu, or the site has a CDU reading from that
      source) → the servers of the rack its reading is recorded with; otherwise, fail safe,
      every server in a liquid-cooled rack at the site. The inventory has no CDU → rack map
      yet, and a CDU's first leak can come before its first reading (or egress may keep its
      readings at the site), so an unplaced CDU is taken to cool the whole liquid loop.

    Planned and decommissioned servers have no power to cut."""
    servers = UltraServer.objects.filter(rack__site_id=site_id).exclude(
        lifecycle_state__in=[lifecycle.PLANNED, lifecycle.DECOMMISSIONED]
    )
    rack = Rack.objects.filter(site_id=site_id, name__in={source, wire.rack_of_pdu(source)}).first()
    if rack is not None:
        servers = servers.filter(rack=rack)
    else:
        cdu = DeviceReading.objects.filter(
            site_id=site_id, source=source, kind=wire.DeviceKind.CDU
        ).first()
        if cdu is None and device_kind != wire.DeviceKind.CDU:
            return None
        if cdu is not None and cdu.rack_id is not None:
            servers = servers.filter(rack_id=cdu.rack_id)
        else:
            servers = servers.filter(rack__cooling_type=Cooling.LIQUID)
    return list(servers.order_by("pk").values_list("pk", flat=True))


def requested_by(fault: Fault) -> str:
    """Who asked for the power-off: the fault (``AgentCommand.requested_by``)."""
    return f"fault:{fault.pk}"


def isolate(opened: list[Fault]) -> list[AgentCommand]:
    """Power off the server of each newly opened isolating fault; ``opened`` are faults this
    transaction created (``faults._open``), with ``site`` loaded. Returns the commands sent.
    The isolation is pending until the power-off succeeds (``settle``)."""
    sent = []
    for fault in opened:
        if fault.rule not in wire.ISOLATING_RULES or fault.ultraserver_id is None:
            continue
        server = (
            UltraServer.objects.select_for_update(of=("self",))
            .select_related("rack__site")
            .get(pk=fault.ultraserver_id)
        )
        command = _power_off(fault, server)
        now = timezone.now()
        transition_locked(
            server,
            server.lifecycle_state,
            ISOLATION_CTX,
            fields={
                "isolated_since": server.isolated_since or now,
                "isolation_reason": _reason(PENDING, fault),
                "in_maintenance": True,
            },
        )
        emit(
            EventKind.SERVER_ISOLATED,
            server,
            tenant=fault.site.tenant_id,
            data={
                "server": server.serial,
                "site": fault.site.code,
                "fault": fault.pk,
                "rule": fault.rule,
                "severity": fault.severity,
                "detail": fault.detail,
                "action": "power-off",
                "reset_type": wire.ISOLATION_RESET_TYPE,
                "command": str(command.id),
                "isolated_at": timestamp(now),
            },
        )
        sent.append(command)
    return sent


def _power_off(fault: Fault, server: UltraServer) -> AgentCommand:
    command = agents.submit(
        site_id=fault.site_id,
        kind=wire.CommandKind.RESET,
        ultraserver_id=server.pk,
        params={wire.CommandParam.RESET_TYPE: wire.ISOLATION_RESET_TYPE},
        timeout_seconds=POWER_OFF_TIMEOUT_SECONDS,
        requested_by=requested_by(fault),
    )
    audit.record_change(ISOLATION_CTX, command, None)
    return command


def _reason(status: str, fault: Fault) -> str:
    label = wire.FAULT_RULE_LABELS.get(wire.FaultRule(fault.rule), fault.rule)
    base = fault.detail.split(NOT_CONFIRMED, 1)[0]
    return f"{status}: {label} (fault #{fault.pk}): {base}"[:500]


def _note(fault: Fault, note: str | None) -> None:
    """The fault's detail says whether its isolation is confirmed (``note`` None: it is)."""
    base = fault.detail.split(NOT_CONFIRMED, 1)[0]
    detail = base if note is None else f"{base[:300]}{NOT_CONFIRMED}{note}"[:500]
    if detail != fault.detail:
        Fault.objects.filter(pk=fault.pk).update(detail=detail)
        fault.detail = detail


def on_command_finished(
    sender: object, finished: list[tuple[object, str]], **kwargs: object
) -> None:
    """``command_finished`` receiver: settle the isolations whose power-off just finished or
    expired. A hint after the commit; a failure here is logged, never the agent's error."""
    ids = [str(command_id) for command_id, asked_by in finished if asked_by.startswith("fault:")]
    if not ids:
        return
    try:
        settle(ids)
    except Exception:
        log.exception("isolation power-offs %s not settled", ids)


def settle(command_ids: list[str]) -> int:
    """For each finished power-off of an isolation: succeeded → the isolation is confirmed;
    failed or expired → sent again, up to ``POWER_OFF_ATTEMPTS`` in all, the fault's detail
    saying the isolation is not confirmed (and, once they are spent, that the power must be cut
    by hand). Returns how many power-offs were sent again."""
    resent = 0
    with transaction.atomic():
        commands = list(
            AgentCommand.objects.filter(
                pk__in=command_ids,
                kind=wire.CommandKind.RESET,
                requested_by__startswith="fault:",
                ultraserver__isnull=False,
            ).order_by("ultraserver_id", "created_at")
        )
        for command in commands:
            fault = (
                Fault.objects.select_for_update(of=("self",))
                .select_related("site")
                .filter(pk=int(command.requested_by.split(":", 1)[1]))
                .first()
            )
            if fault is None or fault.cleared_at is not None:
                continue
            server = (
                UltraServer.objects.select_for_update(of=("self",))
                .select_related("rack__site")
                .get(pk=command.ultraserver_id)
            )
            if server.isolated_since is None:
                continue
            tries = list(
                AgentCommand.objects.filter(
                    ultraserver=server,
                    kind=wire.CommandKind.RESET,
                    requested_by=requested_by(fault),
                ).values_list("state", "error")
            )
            if any(state == CommandState.SUCCEEDED for state, _ in tries):
                _note(fault, None)
                _set_reason(server, _reason(CONFIRMED, fault))
                continue
            if any(state in OPEN_STATES for state, _ in tries):
                continue  # a re-sent power-off is still on its way
            why = f"{command.state}" + (f" ({command.error})" if command.error else "")
            if len(tries) < POWER_OFF_ATTEMPTS:
                _power_off(fault, server)
                resent += 1
                _note(
                    fault,
                    f"power-off {len(tries)} of {POWER_OFF_ATTEMPTS} {why}; sent again",
                )
            else:
                _note(
                    fault,
                    f"all {POWER_OFF_ATTEMPTS} power-offs failed, the last {why}; "
                    "cut its power by hand",
                )
                _set_reason(server, _reason(NOT_CONFIRMED_STATUS, fault))
    return resent


def _set_reason(server: UltraServer, reason: str) -> None:
    transition_locked(
        server, server.lifecycle_state, ISOLATION_CTX, fields={"isolation_reason": reason}
    )


def lift(cleared: list[Fault]) -> int:
    """Servers whose last open isolating fault was just cleared (repaired and returned by the
    maintain workflow) are no longer marked isolated. Powering on is the repair's business.
    Returns how many were lifted."""
    server_ids = {
        f.ultraserver_id
        for f in cleared
        if f.rule in wire.ISOLATING_RULES and f.ultraserver_id is not None
    }
    if not server_ids:
        return 0
    still = set(
        Fault.objects.filter(
            ultraserver_id__in=server_ids,
            rule__in=list(wire.ISOLATING_RULES),
            cleared_at__isnull=True,
        ).values_list("ultraserver_id", flat=True)
    )
    lifted = 0
    for server in (
        UltraServer.objects.select_for_update(of=("self",))
        .select_related("rack__site")
        .filter(pk__in=server_ids - still, isolated_since__isnull=False)
        .order_by("pk")
    ):
        transition_locked(
            server,
            server.lifecycle_state,
            ISOLATION_CTX,
            fields={"isolated_since": None, "isolation_reason": ""},
        )
        lifted += 1
    return lifted
