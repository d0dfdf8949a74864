"""Which telemetry may leave a site: the sovereignty engine decides, per category.

Decided once per site every ``TTL`` seconds (each decision is logged for transparency; a
decision per batch would flood that log) and fail closed: if the engine cannot answer, no
telemetry leaves the site.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from django.conf import settings

from factory.inventory.models import Site
from factory.telemetry.codec import CATEGORIES
from tenants.access import SYSTEM
from tenants.choices import AuditSource
from tenants.services.changes import ChangeContext

log = logging.getLogger(__name__)
TTL = 30.0
CTX = ChangeContext(actor=SYSTEM, source=AuditSource.SYSTEM)
_cache: dict[int, tuple[float, frozenset[str]]] = {}
_lock = threading.Lock()


def destination_for(site: Site) -> Site:
    code = settings.TELEMETRY_DESTINATION_SITE
    return Site.objects.get(code=code) if code else site


def allowed_categories(site: Site) -> frozenset[str]:
    now = time.monotonic()
    with _lock:
        hit = _cache.get(site.pk)
    if hit and hit[0] > now:
        return hit[1]
    from tenants.sovereignty.services import allowed_telemetry

    try:
        allowed = frozenset(allowed_telemetry(site, list(CATEGORIES), destination_for(site), CTX))
    except Exception:
        log.exception("telemetry egress decision failed for site %s; sending nothing", site.pk)
        allowed = frozenset()
    with _lock:
        _cache[site.pk] = (now + TTL, allowed)
    return allowed


def forget() -> None:
    """Drop cached decisions (a rule changed; tests)."""
    with _lock:
        _cache.clear()


def metrics_for(categories: Iterable[str]) -> list[str]:
    """The chip metrics of ``categories`` (Category values), category by category."""
    return [metric for category in sorted(categories) for metric in CATEGORIES.get(category, ())]
