"""Which telemetry may leave a site: the sovereignty engine decides, per category.

Decided once per site and *state of what the decision reads* (the site's and destination's
facts and the tenant's active policies, ``EgressFacts.key``): each decision is logged for
transparency, and a decision per batch or per config poll would flood that log; but a rule
activated or retired is seen at the very next poll, in every process, with no TTL to wait out.
Fails closed: if the engine cannot answer, no telemetry leaves the site.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Iterable

from django.conf import settings

from factory.inventory.models import Site
from factory.telemetry.codec import CATEGORIES
from tenants.access import SYSTEM
from tenants.choices import AuditSource
from tenants.services.changes import ChangeContext

log = logging.getLogger(__name__)
CTX = ChangeContext(actor=SYSTEM, source=AuditSource.SYSTEM)
_cache: dict[int, tuple[Hashable, frozenset[str]]] = {}
_lock = threading.Lock()


def destination_for(site: Site) -> Site:
    code = settings.TELEMETRY_DESTINATION_SITE
    return Site.objects.get(code=code) if code else site


def allowed_categories(site: Site) -> frozenset[str]:
    """The categories that may leave ``site`` now. Reading the facts costs a query or two per
    call; the decisions (and their log records) are taken only when those facts changed."""
    from tenants.sovereignty.services import allowed_telemetry, egress_facts

    try:
        destination = destination_for(site)
        facts = egress_facts(site, destination)
        with _lock:
            hit = _cache.get(site.pk)
        if hit and hit[0] == facts.key:
            return hit[1]
        categories = list(CATEGORIES)
        allowed = frozenset(allowed_telemetry(site, categories, destination, CTX, facts=facts))
    except Exception:
        log.exception("telemetry egress decision failed for site %s; sending nothing", site.pk)
        return frozenset()  # not cached: the next poll asks again
    with _lock:
        _cache[site.pk] = (facts.key, allowed)
    return allowed


def forget() -> None:
    """Drop cached decisions (tests; a rule change needs no call, it changes the key)."""
    with _lock:
        _cache.clear()


def metrics_for(categories: Iterable[str]) -> list[str]:
    """The chip metrics of ``categories`` (Category values), category by category."""
    return [metric for category in sorted(categories) for metric in CATEGORIES.get(category, ())]
