"""Discrete events from a site agent → faults, through the same one-open-per-subject path as
the telemetry rules. A leak's fault isolates its server at once (``isolation``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

from factory.inventory.models import UltraServer
from factory.telemetry import faults, isolation
from factory.telemetry.rules import Finding
from factory.wire import EventKind, FaultRule
from tenants.errors import Denied, Invalid

if TYPE_CHECKING:
    from factory.agents.models import SiteAgent

# Simulator/BMC event kinds → fault rules; the rest (ECC storms, short flaps) are noted in
# telemetry and judged by the rules there.
RULE_FOR_EVENT = {
    EventKind.CHIP_FAILURE: FaultRule.CHIP_DOWN,
    EventKind.HBM_FAILURE: FaultRule.ECC_UNCORRECTABLE,
    EventKind.LINK_DOWN: FaultRule.LINK_DOWN,
    EventKind.FEED_LOSS: FaultRule.FEED_LOSS,
    EventKind.COOLANT_EXCURSION: FaultRule.COOLANT_EXCURSION,
    EventKind.LEAK: FaultRule.LEAK,
}


SERVER_RULES = frozenset({FaultRule.CHIP_DOWN, FaultRule.ECC_UNCORRECTABLE, FaultRule.LINK_DOWN})


def record_events(agent: SiteAgent, events: list[dict]) -> int:
    serials = {e["source"] for e in events}
    servers = {
        s.serial: s for s in UltraServer.objects.filter(serial__in=serials).select_related("rack")
    }
    server_findings: list[tuple[int, Finding]] = []
    site_findings: list[Finding] = []
    for i, event in enumerate(events):
        rule = RULE_FOR_EVENT.get(event["kind"])
        server = servers.get(event["source"])
        if server is not None and (server.rack is None or server.rack.site_id != agent.site_id):
            raise Denied(
                f"events[{i}]: {event['source']} is not at this agent's site; nothing stored.",
                code="other_site",
            )
        chip = event.get("chip")
        if server is not None and chip is not None and chip >= server.model.chip_count:
            raise Invalid(
                f"{server.serial} has {server.model.chip_count} chips.",
                field=f"events[{i}].chip",
            )
        if rule is None:
            continue
        if server is None and rule in SERVER_RULES:
            raise Invalid(
                f"No UltraServer {event['source']!r} at this site.",
                code="unknown_source",
                field=f"events[{i}].source",
            )
        detail = event.get("message") or f"{event['kind']} reported by {event['source']}"
        if rule == FaultRule.LEAK and server is None:
            # A rack's or a CDU's detector: each server it cools gets a leak fault of its own.
            cooled = isolation.cooled_by(agent.site_id, event["source"], event.get("device_kind"))
            where = f"leak at {event['source']}, which cools this server: {detail}"
            server_findings += [(pk, Finding(rule, where)) for pk in cooled or ()]
            if cooled:
                continue
            # Still critical (a leak), as a site fault: say why nothing was powered off.
            detail = (
                f"{detail} (source {event['source']!r} is not a known rack, PDU or CDU: "
                "nothing isolated)"
                if cooled is None
                else f"{detail} (no powered server is cooled by it: nothing isolated)"
            )
        if server is not None:
            # A leak is the whole server's (it is powered off whole): one fault, whatever tray.
            chip = None if rule == FaultRule.LEAK else event.get("chip")
            server_findings.append((server.pk, Finding(rule, detail, chip)))
        else:
            site_findings.append(
                Finding(rule, detail, subject=event.get("feed") or event["source"])
            )
    with transaction.atomic():
        return faults.raise_findings(agent.site_id, server_findings, site_findings)
