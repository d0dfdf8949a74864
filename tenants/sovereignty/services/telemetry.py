"""Telemetry leaving a site: the egress rules."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from tenants.services.changes import ChangeContext
from tenants.sovereignty.core import cedar
from tenants.sovereignty.core.model import (
    Action,
    Request,
    SiteFacts,
)
from tenants.sovereignty.services.decisions import (
    Ask,
    SiteLike,
    Subject,
    decide_many,
    decision_context,
)


@dataclass(frozen=True, eq=False)
class EgressFacts:
    """Everything an egress decision reads: the two sites' facts and the site tenant's active
    policies. Equal ``key``, equal answer: a cache keyed on it sees a rule activated or retired
    (or a site's facts changed) at the next look-up, in every process, with no TTL."""

    source: SiteFacts
    destination: SiteFacts
    policies: cedar.CompiledPolicies

    @property
    def key(self) -> Hashable:
        # The policy text determines the compiled policies; facts are frozen values.
        return (self.source, self.destination, self.policies.text)


def egress_facts(site: SiteLike, destination: SiteLike) -> EgressFacts:
    """Read the facts (one query per site, policies compiled once per rule change)."""
    context = decision_context(site.pk)
    target = context.site if destination.pk == site.pk else decision_context(destination.pk).site
    return EgressFacts(context.site, target, context.policies)


def allowed_telemetry(
    site: SiteLike,
    categories: Iterable[str],
    destination: SiteLike,
    ctx: ChangeContext,
    *,
    facts: EgressFacts | None = None,
) -> list[str]:
    """The telemetry categories that may leave ``site`` for ``destination``; the rest are to be
    dropped at the site agent. One decision per category is recorded; ``facts`` are those the
    caller already read (``egress_facts``). The categories are evaluated together and recorded
    in one insert (``decide_many``), in the order given. Every agent poll asks again, so an
    identical answer is counted against the last chained one (``collapse``), not chained anew."""
    facts = facts or egress_facts(site, destination)
    categories = list(categories)
    asks = [
        Ask(
            Request(
                Action.EGRESS_TELEMETRY,
                None,
                facts.source,
                telemetry_category=category,
                destination=facts.destination,
            ),
            Subject("telemetry", category, f"{category} telemetry"),
            site.pk,
        )
        for category in categories
    ]
    decisions = decide_many(
        asks,
        tenant_id=site.tenant_id,
        ctx=ctx,
        raise_on_deny=False,
        policies=facts.policies,
        collapse=True,
    )
    return [c for c, d in zip(categories, decisions, strict=True) if d.allowed]
