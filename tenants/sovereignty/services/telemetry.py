"""Telemetry leaving a site: the egress rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from tenants.services.changes import ChangeContext
from tenants.sovereignty.core.model import (
    Action,
    Request,
)

if TYPE_CHECKING:
    pass
from tenants.sovereignty.services.decisions import SiteLike, Subject, decide, decision_context


def allowed_telemetry(
    site: SiteLike, categories: Iterable[str], destination: SiteLike, ctx: ChangeContext
) -> list[str]:
    """The telemetry categories that may leave ``site`` for ``destination``; the rest are to be
    dropped at the site agent."""
    context = decision_context(site.pk)
    source, target = context.site, decision_context(destination.pk).site
    allowed = []
    for category in categories:
        request = Request(
            Action.EGRESS_TELEMETRY, None, source, telemetry_category=category, destination=target
        )
        decision = decide(
            request,
            tenant_id=site.tenant_id,
            ctx=ctx,
            site_id=site.pk,
            subject=Subject("telemetry", category, f"{category} telemetry"),
            raise_on_deny=False,
            policies=context.policies,
        )
        if decision.allowed:
            allowed.append(category)
    return allowed
