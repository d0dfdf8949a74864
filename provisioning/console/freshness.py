"""How fresh what the console shows is: when each site's agent was last heard from, and when
the control plane last received telemetry per site and per server. Judged by the clocks and
limits the ``agent-silent`` and ``telemetry-stale`` rules use, so the page and the faults
agree: a server is stale exactly when ``ingest.check_freshness`` would flag it (nothing
received for the limit, and its newest sample the limit behind the newest the site has
delivered); received nothing lately but not behind what was delivered is "behind" (an
outbox's backlog still arriving). A fixed number of queries whatever the number of sites or
servers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from factory.agents.models import SiteAgent
from factory.inventory import lifecycle
from factory.inventory.models import Site, UltraServer
from factory.telemetry.ingest import HEARTBEAT_EVERY, stale_after
from factory.telemetry.models import ServerTelemetry


def agent_silent_after() -> dt.timedelta:
    """The ``agent-silent`` rule's limit (``provisioning.jobs.detect_stale_agents``)."""
    return dt.timedelta(seconds=settings.AGENT_SILENT_AFTER_SECONDS)


def ago(seconds: float) -> str:
    """A short relative age: ``12 s``, ``4 min``, ``3 h``, ``2 d``."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


@dataclass(frozen=True)
class Age:
    """When something was last heard from, against the limit past which it is stale.
    ``behind``: past the limit, but what it last sent is as new as what its site has
    delivered (the freshness rule's second test): late, not silent."""

    at: dt.datetime | None
    limit: dt.timedelta
    now: dt.datetime
    behind: bool = False

    @property
    def seconds(self) -> float | None:
        return None if self.at is None else (self.now - self.at).total_seconds()

    @property
    def state(self) -> str:
        """``never`` (nothing yet: not a fault), ``fresh``, ``behind`` or ``stale`` (past
        the limit: what the rule flags)."""
        if self.at is None:
            return "never"
        if self.now - self.at <= self.limit:
            return "fresh"
        return "behind" if self.behind else "stale"

    @property
    def stale(self) -> bool:
        return self.state == "stale"

    @property
    def text(self) -> str:
        seconds = self.seconds
        return "never" if seconds is None else f"{ago(seconds)} ago"

    @property
    def utc(self) -> str:
        """The absolute time, in UTC whatever the server's zone."""
        return "" if self.at is None else f"{self.at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


def of_sites(site_ids: list[int], now: dt.datetime | None = None) -> dict[int, dict[str, Age]]:
    """Per site: ``agent`` (its live agents' newest last-seen) and ``telemetry`` (when the
    control plane last received a server sample from it: the rule's clock). Two queries."""
    now = now or timezone.now()
    seen = dict(
        SiteAgent.objects.filter(site_id__in=site_ids, revoked_at__isnull=True)
        .values_list("site_id")
        .annotate(at=Max("last_seen_at"))
        .values_list("site_id", "at")
    )
    newest = dict(
        ServerTelemetry.objects.filter(ultraserver__rack__site_id__in=site_ids)
        .values_list("ultraserver__rack__site_id")
        .annotate(at=Max("received_at"))
        .values_list("ultraserver__rack__site_id", "at")
    )
    agent_limit, telemetry_limit = agent_silent_after(), stale_after()
    return {
        pk: {
            "agent": Age(seen.get(pk), agent_limit, now),
            "telemetry": Age(newest.get(pk), telemetry_limit, now),
        }
        for pk in site_ids
    }


def of_servers(site: Site, now: dt.datetime | None = None) -> list[dict]:
    """Per server of the site, by rack and position: ``telemetry`` (when its newest sample was
    received, judged as ``ingest.check_freshness`` judges it) and ``heartbeat`` (the server
    row's ``last_heartbeat_at``, written at most every ``HEARTBEAT_EVERY``, so judged with
    that much more slack). Decommissioned servers are left out, as the rule leaves them: one
    gone for good is not stale. Two queries."""
    now = now or timezone.now()
    limit = stale_after()
    latest = {
        server_id: (ts, received)
        for server_id, ts, received in ServerTelemetry.objects.filter(
            ultraserver__rack__site=site
        ).values_list("ultraserver_id", "ts", "received_at")
    }
    delivered = max((ts for ts, _ in latest.values()), default=None)

    def behind(server_id: int) -> bool:
        """Not the limit behind the newest sample the site delivered: the rule's second test."""
        ts = latest[server_id][0] if server_id in latest else None
        return ts is not None and delivered is not None and ts >= delivered - limit

    return [
        {
            "server": server,
            "telemetry": Age(
                latest[server.pk][1] if server.pk in latest else None,
                limit,
                now,
                behind=behind(server.pk),
            ),
            "heartbeat": Age(
                server.last_heartbeat_at, limit + HEARTBEAT_EVERY, now, behind=behind(server.pk)
            ),
        }
        for server in UltraServer.objects.filter(rack__site=site)
        .exclude(lifecycle_state=lifecycle.DECOMMISSIONED)
        .select_related("rack")
        .only("pk", "serial", "position", "last_heartbeat_at", "rack__name")
        .order_by("rack__name", "-position")
    ]
