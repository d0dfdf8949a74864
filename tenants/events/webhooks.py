"""Webhook delivery: claim, call, record, each step in its own short transaction.

1. ``claim``: the due delivery is locked (``FOR UPDATE SKIP LOCKED``: a delivery another worker
   is claiming is skipped, not waited for), leased (``leased_until``, a fresh ``lease_token``)
   and its attempt numbered; committed before any network call. At most one attempt per
   subscription is in flight: claims take the subscription's row lock, and one whose
   subscription already has a live lease is ``busy`` (the attempt in flight hints the next
   delivery when it ends; the sweep starts one per subscription).
2. ``call``: the signed POST, outside any transaction, within a wall-clock deadline
   (``WEBHOOK_ATTEMPT_DEADLINE_SECONDS``: past it the sockets are shut and the attempt is
   ``too_slow``, however slowly the receiver drips bytes). The host name is resolved once,
   every address checked against the destination policy (``tenants.events.destinations``: the
   control plane's own services are never called) and the connection pinned to the checked
   address (DNS cannot point it elsewhere between the check and the call). No redirects are
   followed, no proxy or ``.netrc`` from the environment is used.
3. ``record``: under the subscription's and the delivery's row locks, the attempt goes into the
   log and the outcome onto the delivery: 2xx → delivered (``delivered_at`` written once, however
   many workers raced); otherwise a retry after the backoff, or, past the attempt cap, failed.
   A worker whose lease was taken over in the meantime records its attempt and leaves the
   outcome to the lease's holder (unless it succeeded: the receiver has the event).

What an attempt records never quotes the receiver or an exception: a failure is a category and
the URL's scheme, host and port (``delivery.failure``), and only a 2xx answer's start is kept. A
tenant may point a webhook anywhere its policy allows; it must not read anything back.

A worker killed between 1 and 3 leaves a lease that expires; ``sweep`` (every 10 s, from beat)
hints due deliveries again, so a lost worker or broker message only delays a delivery. The next
claim writes the lost attempt into the log (outcome unknown) before trying again.

A subscription is disabled after ``WEBHOOK_DISABLE_AFTER_FAILURES`` consecutive deliveries gave
up (each after all its attempts; a success resets the count): recorded in the audit log, a
``webhook.disabled`` event in the tenant's event log, and a notice to the tenant's contact
address. Its pending deliveries wait, and are sent when it is enabled again.

Subscriptions are the tenant's own people's to change (never anyone at the provider), and each
change is a ``webhook.*`` event in the tenant's log, naming the destination's host only.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import errno
import functools
import http.client
import ipaddress
import json
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
import structlog
import urllib3
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count, Exists, Min, OuterRef, Q, QuerySet
from django.utils import timezone
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from tenants.access import SYSTEM, Actor
from tenants.choices import AuditAction, AuditSource
from tenants.errors import Conflict, Denied
from tenants.events import delivery as rules
from tenants.events.choices import DeliveryState
from tenants.events.destinations import destination_policy
from tenants.events.kinds import EventKind
from tenants.events.models import Event, WebhookAttempt, WebhookDelivery, WebhookSubscription
from tenants.events.services import emit, event_payload, hint_deliveries, wake_deliveries
from tenants.services import audit
from tenants.services.changes import ChangeContext, delete_object, save_object

logger = structlog.get_logger(__name__)

SYSTEM_CTX = ChangeContext(actor=SYSTEM, source=AuditSource.SYSTEM)
LOST = "the worker was lost mid-delivery (its lease expired); the outcome is unknown"
RESPONSE_READ_BYTES = 2048
#: A lease outlasts the attempt's deadline by this much: the attempt has recorded by then.
LEASE_MARGIN_SECONDS = 10.0


# --- settings ----------------------------------------------------------------------------------


def retry_policy() -> rules.RetryPolicy:
    return rules.RetryPolicy(
        base=settings.WEBHOOK_RETRY_BASE_SECONDS,
        factor=settings.WEBHOOK_RETRY_FACTOR,
        cap=settings.WEBHOOK_RETRY_MAX_SECONDS,
        max_attempts=settings.WEBHOOK_MAX_ATTEMPTS,
    )


def attempt_deadline() -> float:
    """The most one attempt may take, start to end."""
    return float(settings.WEBHOOK_ATTEMPT_DEADLINE_SECONDS)


def lease_seconds() -> float:
    """Never shorter than an attempt may take, plus a margin: a slow receiver is not called
    twice at once."""
    return max(float(settings.WEBHOOK_LEASE_SECONDS), attempt_deadline() + LEASE_MARGIN_SECONDS)


# --- subscriptions -------------------------------------------------------------------------------


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


#: The code of the refusal below, for clients (and tests) to tell it from a missing role.
PROVIDER_REFUSED = "tenant_people_only"


def refuse_provider_people(actor: Actor) -> None:
    """Only the tenant's own people point its events somewhere. Anyone at the provider (a
    provider membership, a superuser or a staff account) is refused, even holding a tenant
    membership too: one they could have given themselves in the admin. The system itself (no
    person) is not refused: it only ever disables."""
    if actor.user_id is None:
        return
    staff = (
        get_user_model()
        .objects.filter(pk=actor.user_id)
        .filter(Q(is_staff=True) | Q(is_superuser=True))
        .exists()
    )
    if actor.provider_role is not None or staff:
        raise Denied(
            "a webhook sends the tenant's events out of the control plane: only the tenant's "
            "own people change its webhooks, never an account of the provider's (a provider "
            "membership, superuser or staff)",
            code=PROVIDER_REFUSED,
        )


def _announce(
    kind: EventKind, subscription: WebhookSubscription, ctx: ChangeContext, **data: Any
) -> None:
    """A change of a subscription, in the tenant's own log: who, and the destination's scheme,
    host and port (never its path or query)."""
    emit(
        kind,
        subscription,
        tenant=subscription.tenant_id,
        data={"destination": rules.display_url(subscription.url), "by": ctx.actor.username, **data},
    )


def create_subscription(
    subscription: WebhookSubscription, ctx: ChangeContext
) -> tuple[WebhookSubscription, str]:
    """Save a new subscription with a secret made here; the secret is returned to be shown
    once, and never again (the audit log leaves it out)."""
    refuse_provider_people(ctx.actor)
    secret = new_secret()
    subscription.secret = secret
    subscription.created_by_id = ctx.actor.user_id
    with transaction.atomic():
        saved = save_object(subscription, ctx)
        _announce(
            EventKind.WEBHOOK_CREATED,
            saved,
            ctx,
            kinds=list(saved.kinds),
            is_active=saved.is_active,
        )
    return saved, secret


#: The fields whose change is a ``webhook.updated`` event.
ANNOUNCED_FIELDS = ("name", "url", "kinds", "is_active")


def save_subscription(subscription: WebhookSubscription, ctx: ChangeContext) -> WebhookSubscription:
    """Change a subscription. Enabling it again resets its failure count and the reason it was
    disabled, and sends its waiting deliveries at once; disabling it by hand says who did."""
    refuse_provider_people(ctx.actor)
    with transaction.atomic():
        stored = WebhookSubscription.objects.select_for_update().get(pk=subscription.pk)
        enabled = subscription.is_active and not stored.is_active
        if stored.is_active != subscription.is_active:
            if subscription.is_active:
                subscription.consecutive_failures = 0
                subscription.disabled_at, subscription.disabled_reason = None, ""
            else:
                subscription.disabled_at = timezone.now()
                subscription.disabled_reason = f"disabled by {ctx.actor.username}"[:300]
        else:  # not the caller's to change: read again under the lock
            subscription.consecutive_failures = stored.consecutive_failures
            subscription.disabled_at = stored.disabled_at
            subscription.disabled_reason = stored.disabled_reason
        subscription.secret = stored.secret
        changed = [f for f in ANNOUNCED_FIELDS if getattr(stored, f) != getattr(subscription, f)]
        saved = save_object(subscription, ctx)
        if changed:
            extra: dict[str, Any] = {"changed": changed, "is_active": saved.is_active}
            if "url" in changed:
                extra["previous_destination"] = rules.display_url(stored.url)
            _announce(EventKind.WEBHOOK_UPDATED, saved, ctx, **extra)
        if enabled:
            resume(saved)
    return saved


def resume(subscription: WebhookSubscription) -> None:
    """Its waiting deliveries are due now (the receiver is back, its people say), oldest
    first: one is hinted, and each attempt hints the next."""
    now = timezone.now()
    held = WebhookDelivery.objects.filter(subscription=subscription, state=DeliveryState.PENDING)
    held.filter(next_attempt_at__gt=now).update(next_attempt_at=now)
    first = held.order_by("pk").values_list("pk", flat=True).first()
    if first is not None:
        wake_deliveries([first])


def rotate_secret(
    subscription: WebhookSubscription, ctx: ChangeContext
) -> tuple[WebhookSubscription, str]:
    """A new secret, shown once; deliveries are signed with it from the next attempt on."""
    refuse_provider_people(ctx.actor)
    with transaction.atomic():
        stored = WebhookSubscription.objects.select_for_update().get(pk=subscription.pk)
        secret = new_secret()
        stored.secret, stored.secret_rotated_at = secret, timezone.now()
        saved = save_object(stored, ctx)
        _announce(EventKind.WEBHOOK_SECRET_ROTATED, saved, ctx)
    return saved, secret


def delete_subscription(subscription: WebhookSubscription, ctx: ChangeContext) -> None:
    """Delete a subscription and its deliveries; the tenant's log says so."""
    refuse_provider_people(ctx.actor)
    delete_object(
        subscription,
        ctx,
        before_delete=lambda stored: _announce(EventKind.WEBHOOK_DELETED, stored, ctx),
    )


def redeliver(delivery: WebhookDelivery, ctx: ChangeContext) -> WebhookDelivery:
    """Send a delivery again (delivered or failed alike), keeping its log and its id: the
    attempt cap counts afresh. Refused while an attempt is in flight or the subscription is
    disabled."""
    refuse_provider_people(ctx.actor)
    now = timezone.now()
    with transaction.atomic():
        stored = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("subscription")
            .get(pk=delivery.pk)
        )
        if not stored.subscription.is_active:
            raise Conflict(
                "the subscription is disabled; enable it (PATCH is_active true) first",
                code="subscription_disabled",
                field="subscription",
            )
        if stored.leased_until is not None and stored.leased_until > now:
            raise Conflict(
                "an attempt of this delivery is in flight; try again when it has ended",
                code="in_flight",
            )
        stored.state, stored.next_attempt_at = DeliveryState.PENDING, now
        stored.leased_until, stored.lease_token = None, ""
        stored.has_failed, stored.requeued_after_attempts = False, stored.attempts
        saved = save_object(stored, ctx)
        wake_deliveries([saved.pk])
    return saved


# --- claim ---------------------------------------------------------------------------------------


def due(now: dt.datetime) -> QuerySet[WebhookDelivery]:
    """Deliveries to attempt now: pending, of an active subscription, of a committed event,
    not leased or leased by a worker that is gone."""
    return WebhookDelivery.objects.filter(
        Q(leased_until__isnull=True) | Q(leased_until__lt=now),
        state=DeliveryState.PENDING,
        next_attempt_at__lte=now,
        subscription__is_active=True,
        event__sequence__isnull=False,
    )


def in_flight(now: dt.datetime) -> QuerySet[WebhookDelivery]:
    """Deliveries whose attempt is under way (a live lease)."""
    return WebhookDelivery.objects.filter(leased_until__gte=now)


@dataclass(frozen=True)
class Claim:
    """One leased attempt: everything the call needs, read in the claim's transaction."""

    delivery_id: int
    subscription_id: int
    number: int
    token: str
    url: str
    secret: str
    kind: str
    body: bytes


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def claim(delivery_id: int, now: dt.datetime | None = None) -> Claim | None:
    """Lease the delivery if it is due (None if not, if another worker holds its row, or if
    another attempt to its subscription is in flight)."""
    claimed = _claim(delivery_id, now)
    return claimed if isinstance(claimed, Claim) else None


def _claim(delivery_id: int, now: dt.datetime | None = None) -> Claim | str:
    """A ``Claim``, or why not: ``not-due`` or ``busy`` (its subscription has an attempt in
    flight)."""
    now = now or timezone.now()
    with transaction.atomic():
        subscription_id = (
            due(now).filter(pk=delivery_id).values_list("subscription_id", flat=True).first()
        )
        if subscription_id is None:
            return "not-due"
        # The subscription's row first (the order ``record`` locks in): claims of one
        # subscription's deliveries take turns, so "none in flight" holds until this commits.
        subscription = (
            WebhookSubscription.objects.select_for_update()
            .filter(pk=subscription_id, is_active=True)
            .first()
        )
        if subscription is None:
            return "not-due"
        found = (
            due(now)
            .select_for_update(skip_locked=True, of=("self",))
            .filter(pk=delivery_id)
            .first()
        )
        if found is None:
            return "not-due"
        if in_flight(now).filter(subscription_id=subscription_id).exclude(pk=found.pk).exists():
            return "busy"
        if found.leased_until is not None and found.attempts:
            WebhookAttempt.objects.get_or_create(
                delivery=found,
                number=found.attempts,
                defaults={
                    "started_at": found.leased_until - dt.timedelta(seconds=lease_seconds()),
                    "error": LOST,
                },
            )
        found.attempts += 1
        found.leased_until = now + dt.timedelta(seconds=lease_seconds())
        found.lease_token = uuid.uuid4().hex
        found.save(update_fields=["attempts", "leased_until", "lease_token"])
        event = Event.objects.select_related("tenant").get(pk=found.event_id)
    return Claim(
        delivery_id=found.pk,
        subscription_id=subscription.pk,
        number=found.attempts,
        token=found.lease_token,
        url=subscription.url,
        secret=subscription.secret,
        kind=event.kind,
        body=encode(event_payload(event)),
    )


# --- call ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    started_at: dt.datetime
    duration_ms: int
    status_code: int | None = None
    error: str = ""
    excerpt: str = ""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return rules.is_success(self.status_code)


class AttemptFailed(Exception):
    """An attempt ended before an answer: its category (``delivery.FAILURES``) and our own
    words (never an exception's text, which may quote the URL's path)."""

    def __init__(self, category: str, detail: str = "") -> None:
        super().__init__(category)
        self.category, self.detail = category, detail


class Deadline:
    """A wall-clock limit on one attempt. Socket timeouts bound each read, not the whole call
    (a receiver dripping a byte a second never trips a 10 s read timeout), so at the limit a
    timer shuts down every socket of the attempt: whatever read or write is blocked returns at
    once, and the attempt ends ``too_slow``. Sockets are watched through a duplicate of their
    descriptor: shutting it down ends the connection, whatever wraps the original (TLS)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self._handles: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, seconds), self._expire)
        self._timer.daemon = True

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.expired or self.remaining() <= 0

    def watch(self, sock: socket.socket) -> None:
        handle = socket.fromfd(sock.fileno(), sock.family, sock.type)
        with self._lock:
            self._handles.append(handle)
            if self.expired:
                _shut(handle)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for handle in self._handles:
                _shut(handle)

    @contextlib.contextmanager
    def running(self) -> Iterator[Deadline]:
        token = _deadline.set(self)
        self._timer.start()
        try:
            yield self
        finally:
            self._timer.cancel()
            _deadline.reset(token)
            with self._lock:
                for handle in self._handles:
                    handle.close()
                self._handles.clear()


def _shut(handle: socket.socket) -> None:
    with contextlib.suppress(OSError):  # not connected yet, or already closed
        handle.shutdown(socket.SHUT_RDWR)


#: The attempt in progress in this thread: its connections register their sockets with it.
_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "webhook_deadline", default=None
)


def _watched(sock: socket.socket) -> socket.socket:
    deadline = _deadline.get()
    if deadline is not None:
        deadline.watch(sock)
    return sock


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _watched(super()._new_conn())


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _watched(super()._new_conn())


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


def _getaddrinfo(host: str, port: int, deadline: Deadline) -> list[Any]:
    """``getaddrinfo`` within what is left of the deadline (the resolver has no timeout of
    ours: a hung lookup is left to finish in its own thread)."""
    result: dict[str, Any] = {}

    def lookup() -> None:
        try:
            result["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            result["error"] = error

    thread = threading.Thread(target=lookup, daemon=True, name="webhook-dns")
    thread.start()
    thread.join(max(0.0, deadline.remaining()))
    if thread.is_alive():
        raise AttemptFailed("too_slow", "resolving the host name")
    if "error" in result:
        raise AttemptFailed("dns")
    return list(result["infos"])


def resolve(url: str, deadline: Deadline | None = None) -> list[rules.IPAddress]:
    """The addresses to connect to, in the resolver's order: every address of the host passes
    the policy, or none is used."""
    target = rules.destination(url)
    literal = rules.literal_address(target.host)
    if literal is not None:
        addresses = [literal]
    else:
        infos = _getaddrinfo(target.host, target.port, deadline or Deadline(attempt_deadline()))
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    allowed, reason = rules.checked_addresses(addresses, destination_policy(), target.port)
    if not allowed:
        if reason == "unresolved":
            raise AttemptFailed("dns")
        raise AttemptFailed("destination_refused", rules.REFUSALS.get(reason or "", ""))
    return allowed


def _not_connected(error: requests.RequestException) -> bool:
    """The connection was never made (so the receiver has seen nothing): try the next
    address."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0] if error.args else None, "reason", None)
    return isinstance(error, requests.ConnectionError) and isinstance(
        reason, urllib3.exceptions.NewConnectionError
    )


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and everything it wraps (urllib3 and http.client nest them in args, reason,
    ``__cause__`` and ``__context__``)."""
    seen: set[int] = set()
    todo: list[BaseException] = [error]
    while todo and len(seen) < 20:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = [*current.args, getattr(current, "reason", None)]
        wrapped += [current.__cause__, current.__context__]
        todo.extend(e for e in wrapped if isinstance(e, BaseException))


def failure_category(error: BaseException) -> str:
    """What kind of failure an exception of ``requests`` is (``delivery.FAILURES``)."""
    causes = list(_causes(error))
    if any(isinstance(e, requests.exceptions.SSLError | ssl.SSLError) for e in causes):
        return "tls"
    if any(isinstance(e, requests.Timeout | socket.timeout | TimeoutError) for e in causes):
        return "timeout"
    if any(isinstance(e, socket.gaierror) for e in causes):
        return "dns"
    if any(isinstance(e, ConnectionRefusedError) for e in causes):
        return "refused"
    if any(
        isinstance(e, OSError) and e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
        for e in causes
    ):
        return "unreachable"
    closed = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
    if any(isinstance(e, closed | http.client.RemoteDisconnected) for e in causes):
        return "reset"
    if any(
        isinstance(
            e,
            requests.exceptions.ChunkedEncodingError
            | requests.exceptions.ContentDecodingError
            | requests.exceptions.InvalidHeader
            | http.client.HTTPException
            | urllib3.exceptions.ProtocolError,
        )
        for e in causes
    ):
        return "protocol" if not any(isinstance(e, OSError) for e in causes) else "reset"
    return "connection"


class PinnedHostAdapter(HTTPAdapter):
    """Connections whose sockets the attempt's ``Deadline`` watches; for https, TLS to a pinned
    address checked against the URL's host name (SNI and certificate)."""

    def __init__(self, hostname: str | None = None) -> None:
        self.hostname = hostname
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self.hostname is not None:
            kwargs.setdefault("server_hostname", self.hostname)
            kwargs.setdefault("assert_hostname", self.hostname)
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPPool,
            "https": _WatchedHTTPSPool,
        }


def _post(
    claim: Claim,
    addresses: list[rules.IPAddress],
    sent_headers: dict[str, str],
    deadline: Deadline,
) -> tuple[requests.Response, bytes]:
    """POST to the first address that takes the connection (at most three are tried), and
    read the start of a 2xx answer (nothing of any other: it is not recorded)."""
    connect, read = settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS, settings.WEBHOOK_READ_TIMEOUT_SECONDS
    with requests.Session() as session:
        session.trust_env = False  # no proxy, .netrc or CA bundle from the environment
        session.mount("http://", PinnedHostAdapter())
        session.mount("https://", PinnedHostAdapter(rules.destination(claim.url).host))
        tries = addresses[:3]
        for index, address in enumerate(tries):
            left = deadline.remaining()
            if left <= 0:
                raise AttemptFailed("too_slow")
            try:
                response = session.post(
                    rules.pinned_url(claim.url, address),
                    data=claim.body,
                    headers=sent_headers,
                    timeout=(min(connect, left), min(read, left)),
                    allow_redirects=False,
                    stream=True,
                    verify=settings.WEBHOOK_CA_BUNDLE or True,
                )
            except requests.RequestException as error:
                if deadline.passed():
                    raise AttemptFailed("too_slow") from None
                if index + 1 < len(tries) and _not_connected(error):
                    continue
                raise
            raw = b""
            try:
                if rules.is_success(response.status_code):
                    for chunk in response.iter_content(512):
                        raw += chunk
                        if len(raw) >= RESPONSE_READ_BYTES or deadline.passed():
                            break
            except requests.RequestException:
                pass  # the answer's status is in; its body is only a courtesy
            finally:
                response.close()
            return response, raw
    raise AssertionError("unreachable: the last address's error is raised")


def call(claim: Claim) -> Outcome:
    """POST the claim's body, signed, within the attempt's deadline; any failure is an
    outcome, never an exception."""
    started, clock = timezone.now(), time.monotonic()

    def took() -> int:
        return int((time.monotonic() - clock) * 1000)

    timestamp = int(time.time())
    sent_headers = rules.headers(
        secret=claim.secret,
        timestamp=timestamp,
        body=claim.body,
        kind=claim.kind,
        delivery_id=claim.delivery_id,
        attempt=claim.number,
    )
    sent_headers["Host"] = rules.host_header(claim.url)
    deadline = Deadline(attempt_deadline())
    try:
        with deadline.running():
            response, raw = _post(claim, resolve(claim.url, deadline), sent_headers, deadline)
    except AttemptFailed as failed:
        detail = failed.detail
        if failed.category == "too_slow" and not detail:
            detail = f"{deadline.seconds:g} s"
        return Outcome(started, took(), error=rules.failure(failed.category, claim.url, detail))
    except requests.RequestException as error:
        category = "too_slow" if deadline.expired else failure_category(error)
        detail = f"{deadline.seconds:g} s" if category == "too_slow" else ""
        return Outcome(started, took(), error=rules.failure(category, claim.url, detail))
    except Exception as error:  # a bug here must not strand the delivery in its lease
        logger.exception("webhook call failed unexpectedly", delivery=claim.delivery_id)
        return Outcome(
            started, took(), error=rules.failure("internal", claim.url, type(error).__name__)
        )
    code = response.status_code
    ok = rules.is_success(code)
    problem = "" if ok else f"the receiver answered {code}"
    if 300 <= code < 400:
        problem += " (redirects are not followed)"
    return Outcome(
        started,
        took(),
        status_code=code,
        error=problem,
        excerpt=rules.excerpt(raw) if ok else "",
        retry_after=rules.retry_after(response.headers.get("Retry-After"), retry_policy().cap),
    )


# --- record --------------------------------------------------------------------------------------


def record(claim: Claim, outcome: Outcome, now: dt.datetime | None = None) -> str:
    """Log the attempt and settle the delivery: ``delivered``, ``retry``, ``failed``,
    ``already-delivered``, ``superseded`` (another claim holds the lease) or ``gone``."""
    now = now or timezone.now()
    with transaction.atomic():
        # Subscription first, then delivery: the order a subscription's delete locks them in.
        subscription = (
            WebhookSubscription.objects.select_for_update().filter(pk=claim.subscription_id).first()
        )
        found = WebhookDelivery.objects.select_for_update().filter(pk=claim.delivery_id).first()
        if subscription is None or found is None:
            return "gone"
        WebhookAttempt.objects.update_or_create(
            delivery=found,
            number=claim.number,
            defaults={
                "started_at": outcome.started_at,
                "duration_ms": outcome.duration_ms,
                "status_code": outcome.status_code,
                "error": outcome.error[:500],
                "response_excerpt": outcome.excerpt[:500] if outcome.ok else "",
            },
        )
        ours = found.lease_token == claim.token
        if found.state == DeliveryState.DELIVERED:
            if ours:
                found.leased_until, found.lease_token = None, ""
                found.save(update_fields=["leased_until", "lease_token"])
            return "already-delivered"
        if outcome.ok:
            found.state = DeliveryState.DELIVERED
            found.delivered_at = found.delivered_at or now
            found.leased_until, found.lease_token = None, ""
            found.last_status_code, found.last_error = outcome.status_code, ""
            found.save()
            if subscription.consecutive_failures:
                subscription.consecutive_failures = 0
                subscription.save(update_fields=["consecutive_failures"])
            return "delivered"
        if not ours:
            return "superseded"
        return _failed(subscription, found, outcome, now)


def _failed(
    subscription: WebhookSubscription,
    found: WebhookDelivery,
    outcome: Outcome,
    now: dt.datetime,
) -> str:
    """A failed attempt: a retry after the backoff, or, past the attempt cap, a delivery that
    gave up. Only those count towards disabling: a receiver down for a while (its deliveries
    retried in time) is not disabled, nor are its retries dropped."""
    policy = retry_policy()
    found.leased_until, found.lease_token = None, ""
    found.last_status_code, found.last_error = outcome.status_code, outcome.error[:500]
    tries = found.attempts - found.requeued_after_attempts
    if not policy.gives_up(tries):
        delay = policy.delay(tries)
        if outcome.retry_after is not None:
            delay = max(delay, outcome.retry_after)
        found.next_attempt_at = now + dt.timedelta(seconds=delay)
        found.save()
        return "retry"
    found.state = DeliveryState.FAILED
    if not found.has_failed:  # each delivery is counted once (until it is redelivered)
        found.has_failed = True
        subscription.consecutive_failures += 1
        subscription.save(update_fields=["consecutive_failures"])
    found.save()
    if subscription.is_active and (
        subscription.consecutive_failures >= settings.WEBHOOK_DISABLE_AFTER_FAILURES
    ):
        reason = (
            f"{subscription.consecutive_failures} consecutive deliveries gave up; the last, "
            f"{found.pk}, after {tries} attempts ({found.last_error})"
        )
        disable(subscription, reason[:300], found, now)
    return "failed"


def disable(
    subscription: WebhookSubscription,
    reason: str,
    cause: WebhookDelivery,
    now: dt.datetime,
) -> None:
    """Stop sending to a failing receiver: audited, in the tenant's event log, and a notice to
    the tenant's contact address once this commits. Call under the subscription's row lock.
    Its pending deliveries stay pending: they are sent when it is enabled again."""
    before = audit.snapshot(subscription)
    subscription.is_active, subscription.disabled_at = False, now
    subscription.disabled_reason = reason
    subscription.save(update_fields=["is_active", "disabled_at", "disabled_reason", "updated_at"])
    audit.record(
        actor=SYSTEM,
        action=AuditAction.UPDATE,
        instance=subscription,
        before=before,
        after=audit.snapshot(subscription),
        source=AuditSource.SYSTEM,
    )
    emit(
        EventKind.WEBHOOK_DISABLED,
        subscription,
        tenant=subscription.tenant_id,
        data={
            "reason": reason,
            "destination": rules.display_url(subscription.url),
            "consecutive_failures": subscription.consecutive_failures,
            "delivery": cause.pk,
            "last_status_code": cause.last_status_code,
        },
    )
    logger.warning("webhook subscription disabled", subscription=subscription.pk, reason=reason)
    transaction.on_commit(functools.partial(send_disabled_notice, subscription.pk))


def send_disabled_notice(subscription_id: int) -> bool:
    """Mail the tenant's contact address that its subscription was disabled (and how to turn it
    on again). A mail that cannot be sent is logged: the event log has the notice too."""
    subscription = (
        WebhookSubscription.objects.select_related("tenant").filter(pk=subscription_id).first()
    )
    if subscription is None or not subscription.tenant.contact_email:
        return False
    body = (
        f"The webhook subscription '{subscription.name}' of {subscription.tenant.name} "
        f"({rules.display_url(subscription.url)}) was disabled at "
        f"{subscription.disabled_at:%Y-%m-%d %H:%M:%S} UTC.\n\n"
        f"Reason: {subscription.disabled_reason}\n\n"
        "Its pending deliveries wait and are sent once it is enabled again; new events are not "
        "queued for it meanwhile, and stay in the event log "
        "(GET /api/v1/events/?after=<the last id you received>). Once the receiver works again, "
        f"enable it with PATCH /api/v1/webhooks/{subscription.pk}/ "
        '{"is_active": true}; deliveries that gave up can be sent again with '
        "POST /api/v1/webhook-deliveries/<id>/redeliver/.\n"
    )
    try:
        send_mail(
            f"[AI Factory] Webhook '{subscription.name}' disabled",
            body,
            settings.DEFAULT_FROM_EMAIL,
            [subscription.tenant.contact_email],
        )
    except Exception:
        logger.exception("webhook disabled notice not sent", subscription=subscription_id)
        return False
    return True


# --- the entry points of the tasks -------------------------------------------------------------


def deliver(delivery_id: int) -> str:
    """One attempt of one delivery, if it is due (``not-due`` otherwise, ``busy`` if another
    attempt to its subscription is in flight); then hint the subscription's next due delivery,
    so that a backlog drains one attempt after another without waiting for the sweep."""
    claimed = _claim(delivery_id)
    if not isinstance(claimed, Claim):
        return claimed
    try:
        return record(claimed, call(claimed))
    finally:
        hint_next(claimed.subscription_id)


def hint_next(subscription_id: int, now: dt.datetime | None = None) -> int | None:
    """Hint the oldest due delivery of a subscription, if any."""
    pk = (
        due(now or timezone.now())
        .filter(subscription_id=subscription_id)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    if pk is not None:
        hint_deliveries([pk])
    return pk


def sweep(now: dt.datetime | None = None, limit: int = 1000) -> dict[str, int]:
    """Hint the oldest due delivery of each subscription with no attempt in flight: retries
    whose time has come, deliveries whose hint was lost with the broker, leases of workers that
    are gone. One per subscription (the rest follow it, ``deliver``), so a backlog costs one
    message per subscription, not one per delivery. ``due`` counts the due deliveries of those
    subscriptions, ``hinted`` the hints sent."""
    now = now or timezone.now()
    busy = in_flight(now).filter(subscription_id=OuterRef("subscription_id"))
    rows = list(
        due(now)
        .filter(~Exists(busy))
        .values("subscription_id")
        .annotate(
            first=Min("pk"),
            waiting=Count("pk"),
            expired=Count("pk", filter=Q(leased_until__isnull=False)),
        )
        .order_by("first")[:limit]
    )
    hint_deliveries([row["first"] for row in rows])
    return {
        "due": sum(row["waiting"] for row in rows),
        "hinted": len(rows),
        "lease_expired": sum(row["expired"] for row in rows),
    }
