"""The pure rules of webhook delivery: what is signed and how, when to try again, which
destinations may be called, and the stable task names. No Django, no network (a pure core).

What a receiver verifies::

    signed = X-Factory-Timestamp header (ASCII, Unix seconds) + b"." + the raw request body
    X-Factory-Signature-256 = "sha256=" + hex(HMAC-SHA256(key=the subscription's secret, signed))

The timestamp is inside the signed material, so a captured request cannot be replayed later
with a fresh timestamp: receivers refuse a timestamp more than ``REPLAY_WINDOW_SECONDS`` old and
de-duplicate on ``X-Factory-Delivery`` (the same id on every attempt and redelivery).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

#: Celery task names (``tenants.events.tasks`` registers them; hints and beat's row use them).
DELIVER_TASK = "events.deliver_webhook"
SWEEP_TASK = "events.sweep_webhooks"

SIGNATURE_HEADER = "X-Factory-Signature-256"
EVENT_HEADER = "X-Factory-Event"
DELIVERY_HEADER = "X-Factory-Delivery"
TIMESTAMP_HEADER = "X-Factory-Timestamp"
ATTEMPT_HEADER = "X-Factory-Attempt"
USER_AGENT = "AI-Factory-Webhooks/1"
#: How old a signed timestamp a receiver should still accept (what the README recommends).
REPLAY_WINDOW_SECONDS = 300

SCHEMES = ("http", "https")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# --- signing ---------------------------------------------------------------------------------


def signed_material(timestamp: int, body: bytes) -> bytes:
    return str(int(timestamp)).encode("ascii") + b"." + body


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Factory-Signature-256`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), signed_material(timestamp, body), hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    now: float,
    window: int = REPLAY_WINDOW_SECONDS,
) -> bool:
    """What a receiver does: the signature matches (in constant time) and is recent."""
    if not timestamp.isascii() or not timestamp.isdigit():
        return False
    sent = int(timestamp)
    if abs(now - sent) > window:
        return False
    return hmac.compare_digest(signature(secret, sent, body), header)


def headers(
    *, secret: str, timestamp: int, body: bytes, kind: str, delivery_id: int, attempt: int
) -> dict[str, str]:
    """Every header of one attempt."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: kind,
        DELIVERY_HEADER: str(delivery_id),
        TIMESTAMP_HEADER: str(int(timestamp)),
        ATTEMPT_HEADER: str(attempt),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


# --- retries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: ``base * factor**(n-1)`` seconds after the n-th failed
    attempt, at most ``cap``, each spread by ±``jitter`` (so a receiver back from an outage is
    not hit by every waiting delivery at once). After ``max_attempts`` attempts: give up."""

    base: float = 10.0
    factor: float = 6.0
    cap: float = 6 * 3600.0
    jitter: float = 0.2
    max_attempts: int = 12

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        raw = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        spread = raw * self.jitter * (2 * rand() - 1)
        return max(0.0, min(self.cap, raw + spread))

    def gives_up(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


def retry_after(value: str | None, cap: float) -> float | None:
    """A ``Retry-After`` header in seconds (the integer form), bounded by ``cap``."""
    if value is None or not value.strip().isdigit():
        return None
    return min(float(value.strip()), cap)


def is_success(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


# --- destinations ----------------------------------------------------------------------------

#: "This network" (RFC 791): Linux connects 0.x.y.z to the host itself, so never a receiver.
THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
LOOPBACK_V4, LOOPBACK_V6 = ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1")
#: NAT64's well-known prefix (RFC 6052): the last 32 bits are an IPv4 address.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

#: Why an address is refused, by reason code (said without the address at delivery time: the
#: tenant learns what its host name resolves to, not where the control plane's services are).
REFUSALS = {
    "own_service": "one of the control plane's own services",
    "denied": "in a denied network",
    "loopback": "a loopback address",
    "link_local": "a link-local address",
    "this_network": 'in 0.0.0.0/8 ("this network")',
    "not_unicast": "not a unicast address",
    "broadcast": "the broadcast address",
    "private": "a private address",
}


@dataclass(frozen=True)
class DestinationPolicy:
    """Where a webhook may be sent (the SSRF stance).

    Always refused: the control plane's own services (``own_*``: its database, broker and
    cache, and its own host, found from the settings), link-local addresses (cloud metadata
    lives at 169.254.169.254), ``0.0.0.0/8``, unspecified, multicast, reserved and broadcast
    addresses, and any network in ``denied``. An IPv6 address carrying an IPv4 one (mapped,
    6to4, Teredo, NAT64) is judged by what it carries too. Loopback only with
    ``allow_loopback`` (tests), and even then not the loopback ports of the control plane's
    own services. Other non-public addresses (RFC 1918, unique-local, CGNAT) with
    ``allow_private``, the default, because the receivers of a customer whose AI factory runs
    on its own premises usually sit on its private network."""

    allow_loopback: bool = False
    allow_private: bool = True
    denied: tuple[IPNetwork, ...] = field(default=())
    #: Host names of the control plane's own services (refused by name when a URL is saved).
    own_names: frozenset[str] = frozenset()
    #: Their addresses, refused on every port.
    own_addresses: frozenset[IPAddress] = frozenset()
    #: ``(loopback_key(address), port)`` of the services that listen on loopback: refused even
    #: when loopback is allowed (test receivers share 127.0.0.1 with the test database).
    own_endpoints: frozenset[tuple[IPAddress, int]] = frozenset()


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def loopback_key(address: IPAddress) -> IPAddress:
    """Every loopback address of a version reaches a service bound to all of them: one key."""
    if not address.is_loopback:
        return address
    return LOOPBACK_V4 if address.version == 4 else LOOPBACK_V6


def carried(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to: 6to4 (``2002::/16``), both ends of a
    Teredo address (``2001::/32``) and NAT64 (``64:ff9b::/96``)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _judge(
    address: IPAddress, policy: DestinationPolicy, port: int | None
) -> tuple[str, str] | None:
    if address in policy.own_addresses or (
        port is not None and (loopback_key(address), port) in policy.own_endpoints
    ):
        return "own_service", f"{address} is {REFUSALS['own_service']}"
    for network in policy.denied:
        if address.version == network.version and address in network:
            return "denied", f"{address} is in the denied network {network}"
    if address.is_loopback:
        if policy.allow_loopback:
            return None
        return "loopback", f"{address} is {REFUSALS['loopback']}"
    if address.is_link_local:
        return "link_local", f"{address} is {REFUSALS['link_local']}"
    if isinstance(address, ipaddress.IPv4Address) and address in THIS_NETWORK:
        return "this_network", f"{address} is {REFUSALS['this_network']}"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return "not_unicast", f"{address} is {REFUSALS['not_unicast']}"
    if isinstance(address, ipaddress.IPv4Address) and address == ipaddress.IPv4Address(
        "255.255.255.255"
    ):
        return "broadcast", f"{address} is {REFUSALS['broadcast']}"
    if not address.is_global and not policy.allow_private:
        return "private", f"{address} is {REFUSALS['private']}"
    return None


def refusal(
    address: IPAddress, policy: DestinationPolicy, port: int | None = None
) -> tuple[str, str] | None:
    """``(reason code, sentence)`` if ``address`` (on ``port``) may not be called, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # the IPv4 address in IPv6 clothing is what is called
    for judged in (address, *carried(address)):
        found = _judge(judged, policy, port)
        if found:
            return found
    return None


def refused_address(
    address: IPAddress, policy: DestinationPolicy, port: int | None = None
) -> str | None:
    """Why ``address`` may not be called, or None."""
    found = refusal(address, policy, port)
    return found[1] if found else None


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str  # as in the URL, without brackets or port
    port: int  # explicit or the scheme's default
    explicit_port: bool


def url_problem(url: str, policy: DestinationPolicy) -> tuple[str, str] | None:
    """``(code, message)`` if ``url`` may not be a webhook destination, else None. Host names
    are resolved (and their addresses checked) at each delivery, not here."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return "invalid_url", f"not a URL: {error}"
    if parts.scheme.lower() not in SCHEMES:
        return "scheme", "use an http:// or https:// URL"
    if parts.username is not None or parts.password is not None:
        return "credentials", (
            "a URL with credentials (user:password@) is refused: receivers authenticate "
            "deliveries by their signature"
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return "invalid_url", "the URL has no host"
    if port == 0:
        return "invalid_url", "port 0 cannot be called"
    if host.lower() in policy.own_names:
        return "destination_refused", (
            f"{host} is {REFUSALS['own_service']}; webhooks may not call it"
        )
    address = literal_address(host)
    if address is None and (host == "localhost" or host.endswith(".localhost")):
        address = ipaddress.IPv4Address("127.0.0.1")
    if address is not None:
        default = 443 if parts.scheme.lower() == "https" else 80
        reason = refused_address(address, policy, port or default)
        if reason:
            return "destination_refused", f"{reason}; webhooks may not call it"
    return None


def destination(url: str) -> Destination:
    """The parts of an already-checked URL that the sender connects to."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port
    return Destination(
        scheme=scheme,
        host=(parts.hostname or "").rstrip("."),
        port=port or (443 if scheme == "https" else 80),
        explicit_port=port is not None,
    )


def pinned_url(url: str, address: IPAddress) -> str:
    """``url`` with its host replaced by ``address`` (the one that was checked), so that the
    connection goes where the check said, whatever DNS answers a moment later."""
    parts = urlsplit(url)
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return parts._replace(netloc=netloc).geturl()


def host_header(url: str) -> str:
    target = destination(url)
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{target.port}" if target.explicit_port else host


def display_url(url: str) -> str:
    """Scheme, host and port only: what errors, notices, events, the audit log and readers who
    may not change the subscription see (a path or query may carry a token: Slack's, Teams')."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "…"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"


def redacted_url(url: str) -> str:
    """``display_url`` and a fingerprint of the whole URL: what the audit log keeps, so a change
    of path alone is still a change, and the path is still not written down."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return f"{display_url(url)} (sha256 {digest})"


def excerpt(raw: bytes, limit: int = 500) -> str:
    return raw.decode("utf-8", errors="replace")[:limit]


def checked_addresses(
    addresses: Iterable[IPAddress], policy: DestinationPolicy, port: int | None = None
) -> tuple[list[IPAddress], str | None]:
    """The addresses to try, in order and each once, or ``([], why not)`` (a reason code of
    ``REFUSALS``, or ``unresolved``). Every resolved address must pass: a name that also
    resolves inward is refused as a whole."""
    allowed: list[IPAddress] = []
    for address in addresses:
        found = refusal(address, policy, port)
        if found:
            return [], found[0]
        if address not in allowed:
            allowed.append(address)
    return allowed, None if allowed else "unresolved"


# --- what a failed attempt records -------------------------------------------------------------

#: Each failure category and what it says. An attempt's error is built from these and the URL's
#: scheme, host and port only: never an exception's text, which quotes the path and query, nor
#: what the destination said (a tenant must not read the control plane's network back).
FAILURES = {
    "dns": "the host name does not resolve",
    "destination_refused": "the host resolves to an address webhooks may not call",
    "timeout": "no connection or no answer within the timeout",
    "refused": "the connection was refused",
    "unreachable": "the network or host is unreachable",
    "reset": "the connection was closed or reset before an answer",
    "tls": "the TLS handshake or certificate check failed",
    "protocol": "the answer was not valid HTTP",
    "too_slow": "the attempt took longer than its deadline",
    "connection": "the connection failed",
    "internal": "the attempt failed inside the control plane",
}


def failure(category: str, url: str, detail: str = "") -> str:
    """``<category>: <what it means> (<scheme://host:port/…>)``; ``detail`` is our own words,
    never a remote party's."""
    what = FAILURES.get(category, FAILURES["connection"])
    if detail:
        what = f"{what}: {detail}"
    return f"{category}: {what} ({display_url(url)})"


def kinds_problem(kinds: object, known: Mapping[str, object] | Iterable[str]) -> str | None:
    """Why ``kinds`` is not a list of distinct known event kinds, or None."""
    allowed = set(known)
    if not isinstance(kinds, list):
        return "a list of event kinds (empty: every kind)"
    unknown = [k for k in kinds if not isinstance(k, str) or k not in allowed]
    if unknown:
        return (
            f"unknown event kind {str(unknown[0])[:60]!r}; choose from {', '.join(sorted(allowed))}"
        )
    if len(set(kinds)) != len(kinds):
        return "each kind once"
    return None
