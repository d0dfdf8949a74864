"""Failed log-ins, counted per username and client address in the cache: after
``LOGIN_MAX_FAILURES`` failures within ``LOGIN_LOCKOUT_SECONDS`` that username is locked out
from that address until the window (which starts at the first failure) has passed. Only that
pair is locked: the person can still log in from elsewhere, and one address guessing at many
usernames meets the API's per-address rate limit (``factory.core.throttling``). Every
password check counts: the API's token log-in, the console's and the admin's log-in forms (the
authentication backend, ``tenants.backends``).

Keys are digests of username and address; no password is ever stored or logged. A correct
password while locked out is refused too, and does not clear the count.
"""

from __future__ import annotations

import hashlib
import math
import time

import structlog
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

logger = structlog.get_logger(__name__)

_PREFIX = "login-failures:"


def _key(username: str, address: str) -> str:
    subject = f"{username.strip().casefold()}\0{address}".encode()
    return _PREFIX + hashlib.sha256(subject).hexdigest()


def _window() -> int:
    return int(settings.LOGIN_LOCKOUT_SECONDS)


def locked_for(username: str, address: str) -> int | None:
    """Seconds until ``username`` may try again from ``address``; None if it may now (or if the
    cache cannot say: a cache outage must not lock everybody out)."""
    key = _key(username, address)
    try:
        state = cache.get_many([f"{key}:n", f"{key}:t"])
    except Exception:
        logger.warning("login lockout cache unavailable; not checked", exc_info=True)
        return None
    failures, first = state.get(f"{key}:n", 0), state.get(f"{key}:t")
    if failures < settings.LOGIN_MAX_FAILURES:
        return None
    left = (time.time() if first is None else first) + _window() - time.time()
    return math.ceil(left) if left > 0 else None


def lockout_message(wait: int) -> str:
    """What a locked-out person is told, wherever they log in (API, console, admin): the wait
    in whole minutes, rounded up."""
    minutes = max(1, math.ceil(wait / 60))
    return (
        f"Too many failed log-ins for this username: try again in {minutes} "
        f"minute{'s' if minutes != 1 else ''}."
    )


def record_failure(username: str, address: str) -> int:
    """Count one failed log-in; returns the failures in the current window."""
    key = _key(username, address)
    window = _window()
    try:
        cache.add(f"{key}:t", time.time(), window)
        cache.add(f"{key}:n", 0, window)
        try:
            failures = cache.incr(f"{key}:n")
        except ValueError:  # expired between add and incr
            cache.set(f"{key}:n", 1, window)
            failures = 1
    except Exception:
        logger.warning("login lockout cache unavailable; failure not counted", exc_info=True)
        failures = 0
    logger.warning("login failed", username=username[:150], address=address, failures=failures)
    return int(failures)


def clear(username: str, address: str) -> None:
    """A successful log-in starts the count afresh."""
    key = _key(username, address)
    try:
        cache.delete_many([f"{key}:n", f"{key}:t"])
    except Exception:
        logger.warning("login lockout cache unavailable; count not cleared", exc_info=True)


def client_address(request: HttpRequest) -> str:
    """The address failures are counted against: the client's (behind the front, as
    ``ClientAddressMiddleware`` has read it from X-Forwarded-For)."""
    return str(request.META.get("REMOTE_ADDR") or "unknown")
