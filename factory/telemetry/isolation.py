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

Which servers: a leak reported by a server's BMC (a tray's or manifold's LeakDetector) isolates
that server; one at a rack or a CDU isolates every server it cools (``cooled_by``), each with a
leak fault of its own, so each is repaired, returned and un-isolated on its own.
"""

from __future__ import annotations

from django.utils import timezone

from factory import wire
from factory.agents import services as agents
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

ISOLATION_CTX = ChangeContext(actor=SYSTEM, source=AuditSource.SYSTEM)
#: How long the agent has to cut the power; a power-off is seconds on any BMC.
POWER_OFF_TIMEOUT_SECONDS = 120


def cooled_by(site_id: int, source: str) -> list[int]:
    """The servers a leak at ``source`` (not a server's own BMC) puts at risk: a rack's
    detector (the rack, or its PDUs' source) → the servers in that rack; a CDU → the servers
    of the rack it is recorded with, or, for a CDU of the whole site (as the simulated site's
    is), every server in a liquid-cooled rack there. Unknown sources put none at risk: their
    leak is a site fault, not a reason to power off a hall. Planned and decommissioned servers
    have no power to cut."""
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
        if cdu is None:
            return []
        if cdu.rack_id is not None:
            servers = servers.filter(rack_id=cdu.rack_id)
        else:
            servers = servers.filter(rack__cooling_type=Cooling.LIQUID)
    return list(servers.order_by("pk").values_list("pk", flat=True))


def requested_by(fault: Fault) -> str:
    """Who asked for the power-off: the fault (``AgentCommand.requested_by``)."""
    return f"fault:{fault.pk}"


def isolate(opened: list[Fault]) -> list[AgentCommand]:
    """Power off the server of each newly opened isolating fault; ``opened`` are faults this
    transaction created (``faults._open``), with ``site`` loaded. Returns the commands sent."""
    sent = []
    for fault in opened:
        if fault.rule not in wire.ISOLATING_RULES or fault.ultraserver_id is None:
            continue
        server = (
            UltraServer.objects.select_for_update(of=("self",))
            .select_related("rack__site")
            .get(pk=fault.ultraserver_id)
        )
        command = agents.submit(
            site_id=fault.site_id,
            kind=wire.CommandKind.RESET,
            ultraserver_id=server.pk,
            params={wire.CommandParam.RESET_TYPE: wire.ISOLATION_RESET_TYPE},
            timeout_seconds=POWER_OFF_TIMEOUT_SECONDS,
            requested_by=requested_by(fault),
        )
        audit.record_change(ISOLATION_CTX, command, None)
        now = timezone.now()
        label = wire.FAULT_RULE_LABELS.get(wire.FaultRule(fault.rule), fault.rule)
        reason = f"{label} (fault #{fault.pk}): {fault.detail}"[:500]
        transition_locked(
            server,
            server.lifecycle_state,
            ISOLATION_CTX,
            fields={
                "isolated_since": server.isolated_since or now,
                "isolation_reason": reason,
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
                "severity": wire.severity_of(fault.rule).value,
                "detail": fault.detail,
                "action": "power-off",
                "reset_type": wire.ISOLATION_RESET_TYPE,
                "command": str(command.id),
                "isolated_at": timestamp(now),
            },
        )
        sent.append(command)
    return sent


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
