"""Open watch streams, counted, so that no one can hold every web thread: each stream holds
one (``stream.py``), and the rate limits count requests, not streams that stay open.

A stream takes a slot before it starts and gives it back when it ends. The caps:

- per credential (an API token; a session counts as its user): ``EVENTS_WATCH_MAX_PER_TOKEN``;
- per tenant, over all its people's streams (a person in several tenants counts in each; the
  provider's people count as one more, ``provider``): ``EVENTS_WATCH_MAX_PER_TENANT``;
- per web process, so a process always keeps threads for the rest of the API:
  ``EVENTS_WATCH_MAX_PER_PROCESS``.

Past any of them the answer is a 429 with ``Retry-After``, before the stream starts.

The first two are shared by every process: a sorted set per credential and per tenant in
Redis (``REDIS_URL``), one member per open stream scored by when its lease runs out. Taking a
slot is one Lua script (drop expired members, check every cap, add to every set), so two
processes cannot both take the last one. A stream renews its lease as it goes (each access
re-check); a worker killed mid-stream never gives its slots back, and they lapse with the lease
(``lease_seconds``). Without Redis the sets live in this process (one process: runserver,
tests). If Redis does not answer, the stream is served uncounted (as the rate limits do) and
only the per-process cap holds.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

import redis
import structlog
from django.conf import settings

from tenants.errors import TooManyRequests
from tenants.process_caps import ProcessCap

logger = structlog.get_logger(__name__)

PROVIDER = "provider"  # the tenant key of the provider's people's streams
#: Retry-After when this process is full: another process (or this one soon) may have room.
PROCESS_RETRY_SECONDS = 5

# KEYS: the sets. ARGV: now, lease expiry, member, key ttl, then one cap per key (0: none).
# Returns 0 when the slot was taken, else the 1-based index of the first full set.
_ACQUIRE = """
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local cap = tonumber(ARGV[4 + i])
  if cap > 0 and redis.call('ZCARD', key) >= cap then
    return i
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[2], ARGV[3])
  redis.call('EXPIRE', key, ARGV[4])
end
return 0
"""


def lease_seconds() -> float:
    """How long a slot outlives its last renewal: three access re-checks, at least 30 s."""
    return max(30.0, 3 * float(settings.EVENTS_WATCH_RECHECK_SECONDS))


def _prefix() -> str:
    return str(settings.EVENTS_WATCH_KEY_PREFIX)


def credential_key(credential: str) -> str:
    return f"{_prefix()}:credential:{credential}"


def tenant_key(tenant: int | str) -> str:
    return f"{_prefix()}:tenant:{tenant}"


class _Sets(Protocol):
    def acquire(
        self, keys: Sequence[str], caps: Sequence[int], member: str, expires: float, now: float
    ) -> int: ...

    def renew(self, keys: Sequence[str], member: str, expires: float) -> None: ...

    def release(self, keys: Sequence[str], member: str) -> None: ...

    def count(self, keys: Sequence[str], now: float) -> list[int]: ...

    def deadlines(self, key: str) -> list[str]: ...


class _RedisSets:
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self.script = self.client.register_script(_ACQUIRE)

    def acquire(
        self, keys: Sequence[str], caps: Sequence[int], member: str, expires: float, now: float
    ) -> int:
        ttl = int(expires - now) + 60
        return int(self.script(keys=list(keys), args=[now, expires, member, ttl, *caps]))

    def renew(self, keys: Sequence[str], member: str, expires: float) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zadd(key, {member: expires})
                pipe.expireat(key, int(expires) + 60)
            pipe.execute()

    def release(self, keys: Sequence[str], member: str) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrem(key, member)
            pipe.execute()

    def count(self, keys: Sequence[str], now: float) -> list[int]:
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zcount(key, f"({now}", "+inf")
            return [int(n) for n in pipe.execute()]

    def deadlines(self, key: str) -> list[str]:
        members: list[Any] = list(self.client.zrange(key, 0, -1))  # type: ignore[arg-type]
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]


class _LocalSets:
    """The same sets in this process, for a server without Redis."""

    def __init__(self) -> None:
        self.sets: dict[str, dict[str, float]] = {}
        self.lock = threading.Lock()

    def acquire(
        self, keys: Sequence[str], caps: Sequence[int], member: str, expires: float, now: float
    ) -> int:
        with self.lock:
            for index, (key, cap) in enumerate(zip(keys, caps, strict=True), start=1):
                live = {m: at for m, at in self.sets.get(key, {}).items() if at > now}
                self.sets[key] = live
                if cap > 0 and len(live) >= cap:
                    return index
            for key in keys:
                self.sets[key][member] = expires
            return 0

    def renew(self, keys: Sequence[str], member: str, expires: float) -> None:
        with self.lock:
            for key in keys:
                self.sets.setdefault(key, {})[member] = expires

    def release(self, keys: Sequence[str], member: str) -> None:
        with self.lock:
            for key in keys:
                self.sets.get(key, {}).pop(member, None)

    def count(self, keys: Sequence[str], now: float) -> list[int]:
        with self.lock:
            return [sum(1 for at in self.sets.get(key, {}).values() if at > now) for key in keys]

    def deadlines(self, key: str) -> list[str]:
        with self.lock:
            return list(self.sets.get(key, {}))


_local = _LocalSets()


@cache
def _redis_sets(url: str) -> _RedisSets:
    """One client per process (its connection pool is thread-safe)."""
    return _RedisSets(url)


def _sets() -> _Sets:
    url = str(settings.REDIS_URL or "")
    return _redis_sets(url) if url else _local


_process = ProcessCap()  # streams open in this process


def open_in_process() -> int:
    return _process.open


@dataclass
class Slot:
    """One open stream's place under the caps; ``release`` is safe to call more than once."""

    member: str
    keys: list[str]
    counted: bool  # False: Redis did not answer, so only the process cap holds it
    released: bool = field(default=False)

    def renew(self) -> None:
        if self.released or not self.counted:
            return
        try:
            _sets().renew(self.keys, self.member, time.time() + lease_seconds())
        except (redis.RedisError, OSError):
            logger.warning("event_stream_slot_not_renewed", exc_info=True)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        _process.give_back()
        if not self.counted:
            return
        try:
            _sets().release(self.keys, self.member)
        except (redis.RedisError, OSError):  # it lapses with its lease
            logger.warning("event_stream_slot_not_released", exc_info=True)


def _retry_after(key: str, now: float) -> int:
    """Seconds until the first stream under ``key`` is due to end (its member says when)."""
    ends = []
    try:
        for member in _sets().deadlines(key):
            _, _, at = member.partition("@")
            try:
                ends.append(float(at))
            except ValueError:
                continue
    except (redis.RedisError, OSError):
        pass
    soonest = min(ends, default=now + lease_seconds())
    return max(1, min(int(soonest - now) + 1, int(lease_seconds())))


def acquire(credential: str, tenants: Iterable[int | None], seconds: float) -> Slot:
    """A slot for a stream of ``credential`` (``token:<id>``, ``user:<id>``) seeing ``tenants``
    (None: the provider's view) that is to last ``seconds``; TooManyRequests past a cap."""
    if not _process.take(int(settings.EVENTS_WATCH_MAX_PER_PROCESS)):
        raise TooManyRequests(
            "This server has as many event streams open as it serves; try again shortly.",
            code="too_many_streams",
            retry_after=PROCESS_RETRY_SECONDS,
        )
    now = time.time()
    member = f"{uuid.uuid4().hex}@{now + seconds:.0f}"
    keys = [credential_key(credential)]
    caps = [int(settings.EVENTS_WATCH_MAX_PER_TOKEN)]
    for tenant in sorted({PROVIDER if t is None else str(t) for t in tenants}):
        keys.append(tenant_key(tenant))
        caps.append(int(settings.EVENTS_WATCH_MAX_PER_TENANT))
    try:
        full = _sets().acquire(keys, caps, member, now + lease_seconds(), now)
    except (redis.RedisError, OSError):
        logger.warning("event_stream_slots_unavailable; stream not counted", exc_info=True)
        return Slot(member, keys, counted=False)
    if full:
        _process.give_back()
        whose = "this credential" if full == 1 else "this tenant"
        raise TooManyRequests(
            f"{whose.capitalize()} has {caps[full - 1]} event streams open, the most allowed; "
            "close one, or try again when one ends.",
            code="too_many_streams",
            retry_after=_retry_after(keys[full - 1], now),
        )
    return Slot(member, keys, counted=True)


def open_streams(tenants: Sequence[int | None]) -> list[int]:
    """How many streams are open now for each of ``tenants`` (None: the provider's people's).
    Raises ``redis.RedisError`` or ``OSError`` if Redis does not answer."""
    keys = [tenant_key(PROVIDER if t is None else t) for t in tenants]
    return _sets().count(keys, time.time())
