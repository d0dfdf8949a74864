"""Rate limits per credential: an API token, a session's user, a site agent (or, for anonymous
calls, the client address), each with its own budget (``settings.RATE_LIMITS``).

Counts live in a shared cache (``settings.RATE_LIMIT_CACHE``: Redis when ``REDIS_URL`` is set),
so every web worker counts against one budget. Each budget is a fixed window: ``N`` requests per
second, minute, hour or day, counted with an atomic increment. Over budget is a 429 with the
standard error body and ``Retry-After``; every response of a throttled request carries the
IETF draft's ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until
the window ends), set by ``RateLimitHeadersMiddleware``.

A view picks its budget with ``throttle_scope`` (the agent gateway's ``agent``; telemetry ingest
its own ``telemetry``; the metrics scrapes ``metrics``); otherwise the credential decides:
``token``, ``user`` or ``anon``.

A refused credential (401: an unknown, expired, revoked or malformed token) is answered before
any throttle runs, so it is counted on its own (``refused_credential``, called by the API's
exception handler): per client address, in the ``refused`` budget. Past it, the answer is a 429
with ``Retry-After`` instead of another 401. A valid credential is never counted there.
"""

from __future__ import annotations

import functools
import math
import re
import time
from dataclasses import dataclass
from typing import Any

import structlog
from django.conf import settings
from django.core.cache import caches
from rest_framework import exceptions
from rest_framework.throttling import BaseThrottle

logger = structlog.get_logger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_OFF = {"", "0", "off", "none", "unlimited"}


_RATE = re.compile(r"^(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour|d|day)s?$")


@functools.lru_cache(maxsize=64)
def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"600/min"`` → (600, 60); ``"100/10s"`` → (100, 10); ``"off"`` (or nothing) → None: not
    limited. Periods: ``s``/``sec``/``second``, ``m``/``min``/``minute``, ``h``/``hour``,
    ``d``/``day``."""
    if rate is None or rate.strip().lower() in _OFF:
        return None
    match = _RATE.match(rate.strip().lower())
    if match is None:
        raise ValueError(f"rate {rate!r} is not 'N/period' (e.g. 600/min, 100/10s, off)")
    limit, window = int(match[1]), int(match[2] or 1) * _PERIODS[match[3][0]]
    if limit < 1 or window < 1:
        raise ValueError(f"rate {rate!r} must allow at least one request per period")
    return limit, window


@dataclass(frozen=True)
class RateLimit:
    """Where a request stands in its budget (what the ``RateLimit-*`` headers say)."""

    scope: str
    limit: int
    window: int
    remaining: int
    reset: int  # seconds until the window ends

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }


#: Who a scope's budget belongs to, in the 429's message.
_WHOSE = {
    "token": "this API token",
    "user": "this user",
    "agent": "this site agent",
    "telemetry": "this site agent's telemetry",
    "anon": "this client address",
    "refused": "refused credentials from this client address",
    "metrics": "this credential's metrics scrapes",
}


def _count(key: str, window: int) -> int:
    """This window's count after this request (one atomic increment in the shared cache)."""
    cache = caches[settings.RATE_LIMIT_CACHE]
    for _ in range(3):
        if cache.add(key, 1, timeout=window + 1):
            return 1
        try:
            return int(cache.incr(key))
        except ValueError:  # expired between add and incr: start the window again
            continue
    return 1


def _spend(request: Any, scope: str, ident: str) -> RateLimit | None:
    """Count ``request`` against ``scope``'s budget for ``ident``: where it now stands (also
    kept for ``RateLimitHeadersMiddleware``) if that is past the budget, else None. None too if
    the scope is not limited or the cache cannot count: then it is served, not refused."""
    rate = parse_rate(settings.RATE_LIMITS.get(scope))
    if rate is None:
        return None
    limit, window = rate
    now = time.time()
    start = int(now // window) * window
    try:
        count = _count(f"{settings.RATE_LIMIT_KEY_PREFIX}:{scope}:{ident}:{start}", window)
    except Exception:  # the cache is down: serve rather than refuse everyone
        logger.warning("rate limit cache unavailable; request not counted", exc_info=True)
        return None
    reset = max(1, math.ceil(start + window - now))
    state = RateLimit(scope, limit, window, max(0, limit - count), reset)
    request._request.rate_limit = state  # for RateLimitHeadersMiddleware
    return state if count > limit else None


def _throttled(state: RateLimit) -> exceptions.Throttled:
    whose = _WHOSE.get(state.scope, state.scope)
    return exceptions.Throttled(
        wait=state.reset,
        detail=f"Rate limit of {state.limit} requests per {state.window} s for {whose} exceeded.",
        code="throttled",
    )


def refused_credential(request: Any, refusal: exceptions.APIException) -> exceptions.APIException:
    """The answer to a request whose credential was refused: ``refusal`` (the 401) while its
    client address is within the ``refused`` budget, a 429 past it."""
    ident = f"addr:{CredentialRateThrottle().get_ident(request)}"
    over = _spend(request, "refused", ident)
    return refusal if over is None else _throttled(over)


class CredentialRateThrottle(BaseThrottle):
    """DRF's throttle for every API view (``DEFAULT_THROTTLE_CLASSES``)."""

    def scope_and_ident(self, request: Any, view: Any) -> tuple[str, str]:
        scope = getattr(view, "throttle_scope", None)
        auth = request.auth
        meta = getattr(auth, "_meta", None)
        if meta is not None and getattr(auth, "pk", None) is not None:
            # An API token or a site agent's credential: each has its own budget.
            return scope or "token", f"{meta.label_lower}:{auth.pk}"
        user = request.user
        if user is not None and user.is_authenticated and user.pk is not None:
            return scope or "user", f"user:{user.pk}"
        return scope or "anon", f"addr:{self.get_ident(request)}"

    def allow_request(self, request: Any, view: Any) -> bool:
        over = _spend(request, *self.scope_and_ident(request, view))
        if over is not None:
            raise _throttled(over)
        return True


class RateLimitHeadersMiddleware:
    """``RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` on every response of a request that was
    counted against a budget (429s included)."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        response = self.get_response(request)
        state: RateLimit | None = getattr(request, "rate_limit", None)
        if state is not None:
            for name, value in state.headers().items():
                response[name] = value
        return response
