"""The destination policy from the settings, with the control plane's own services in it.

A webhook is a request the control plane makes on a tenant's behalf, so it must never reach
the control plane's own database, broker or cache, nor the host it runs on: their addresses are
found from the settings that point at them (``DATABASES``, ``CELERY_BROKER_URL``,
``REDIS_URL``, ``CACHES``), plus ``WEBHOOK_DENIED_HOSTS`` (other hosts of the deployment, e.g.
the web service) and this host's own name. Names are resolved again at most every
``REFRESH_SECONDS``, so a service that moves is followed; the policy is asked at every attempt.

A service on a non-loopback address is refused on every port of that address; one on loopback
only on its own port (loopback as a whole is ``WEBHOOK_ALLOW_LOOPBACK``'s: test receivers share
127.0.0.1 with the test database).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from tenants.events import delivery as rules

REFRESH_SECONDS = 30.0
DEFAULT_PORTS = {
    "postgres": 5432,
    "postgresql": 5432,
    "postgis": 5432,
    "pgsql": 5432,
    "mysql": 3306,
    "redis": 6379,
    "rediss": 6379,
    "amqp": 5672,
    "amqps": 5671,
    "pyamqp": 5672,
    "memcache": 11211,
}
ENGINE_PORTS = {"postgresql": 5432, "postgis": 5432, "mysql": 3306}

_cache: dict[str, tuple[float, tuple[rules.IPAddress, ...]]] = {}
_lock = threading.Lock()


def _url_endpoint(url: str) -> tuple[str, int | None] | None:
    if "://" not in url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").rstrip(".")
    if not host:  # filesystem://, unix sockets, memory://
        return None
    return host, port or DEFAULT_PORTS.get(parts.scheme.lower().split("+")[0])


def service_endpoints() -> Iterator[tuple[str, int | None]]:
    """``(host, port)`` of every service the settings point the control plane at."""
    for db in settings.DATABASES.values():
        host = str(db.get("HOST") or "")
        if host and not host.startswith("/"):  # a socket directory is not on the network
            engine = str(db.get("ENGINE", "")).rsplit(".", 1)[-1]
            port = db.get("PORT")
            yield host, int(port) if port else ENGINE_PORTS.get(engine)
    for url in (settings.CELERY_BROKER_URL, getattr(settings, "REDIS_URL", "")):
        for one in str(url or "").split(";"):  # a broker URL may list fail-over hosts
            found = _url_endpoint(one.strip())
            if found:
                yield found
    for cache in getattr(settings, "CACHES", {}).values():
        locations: Any = cache.get("LOCATION") or []
        for location in [locations] if isinstance(locations, str) else locations:
            found = _url_endpoint(str(location))
            if found is None and "memcache" in str(cache.get("BACKEND", "")).lower():
                host, _, port = str(location).rpartition(":")
                found = (host, int(port)) if host and port.isdigit() else None
            if found:
                yield found


def _resolve(host: str) -> tuple[rules.IPAddress, ...]:
    """The addresses of ``host``, cached for ``REFRESH_SECONDS`` (a name that does not resolve
    denies nothing: nothing can be called there)."""
    literal = rules.literal_address(host)
    if literal is not None:
        return (literal,)
    now = time.monotonic()
    with _lock:
        cached = _cache.get(host)
    if cached and cached[0] > now:
        return cached[1]
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        found = tuple(
            dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos)
        )
    except (OSError, ValueError):
        found = ()
    with _lock:
        _cache[host] = (now + REFRESH_SECONDS, found)
    return found


def _own_hosts() -> Iterable[str]:
    yield from (h.strip() for h in settings.WEBHOOK_DENIED_HOSTS if h.strip())
    name = socket.gethostname()
    if name:
        yield name


def destination_policy() -> rules.DestinationPolicy:
    """Where webhooks may be sent, from the settings (``WEBHOOK_*``) and the control plane's
    own services."""
    names: set[str] = set()
    addresses: set[rules.IPAddress] = set()
    endpoints: set[tuple[rules.IPAddress, int]] = set()

    def deny(host: str, port: int | None) -> None:
        if rules.literal_address(host) is None:
            names.add(host.lower().rstrip("."))
        for address in _resolve(host):
            if address.is_loopback or address.is_unspecified:
                if port is not None:  # 0.0.0.0 / :: as a client's target: this host
                    endpoints.update(((rules.LOOPBACK_V4, port), (rules.LOOPBACK_V6, port)))
            else:
                addresses.add(address)

    for host, port in service_endpoints():
        deny(host, port)
    for host in _own_hosts():
        deny(host, None)
    return rules.DestinationPolicy(
        allow_loopback=settings.WEBHOOK_ALLOW_LOOPBACK,
        allow_private=settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS,
        denied=rules.parse_networks(settings.WEBHOOK_DENIED_NETWORKS),
        own_names=frozenset(names),
        own_addresses=frozenset(addresses),
        own_endpoints=frozenset(endpoints),
    )
