"""The watch stream: the event log as server-sent events (``text/event-stream``).

Each frame is ``id: <id>``, ``event: <kind>`` and ``data: <the event as JSON>`` (the one shape
of ``services.event_payload``), then a blank line. A client that lost the stream reconnects
with the last ``id`` it saw in ``Last-Event-ID`` and gets exactly what followed: ids are drawn
at commit, in commit order (``models/events.py``), so "after the last one seen" skips nothing
and repeats nothing. A ``: keepalive`` comment goes out after ``keepalive`` seconds without a
frame (proxies and clients then know the stream is alive, and a vanished client is noticed
when the write fails). The stream ends after ``timeout`` seconds; the client reconnects.

Polled, not pushed: every ``poll`` seconds one indexed query (``sequence > last sent``, with
the caller's scope and filters). LISTEN/NOTIFY would need a connection held per stream for
its whole life (or a listener thread per process) and still a query to read the rows, and the
embedded default, SQLite, has no such thing.

Frames carry ``event: <kind>``, so a browser's ``EventSource`` delivers them to
``addEventListener("<kind>", ...)`` per kind; its ``onmessage`` sees none of them (that
handler gets only frames without an ``event`` field).

The database between polls: each poll is one autocommit query, so no transaction stays open
while the stream waits. Every ``hand_back_every`` polls, and after a failed query, the
connection is handed back as at the end of a request (``close_if_unusable_or_obsolete``:
closed when broken or older than ``CONN_MAX_AGE``, at once where that is 0). Not after every
poll: handing back also re-arms the health check (``CONN_HEALTH_CHECKS``), which would put a
``SELECT 1`` before each poll's query. A poll that fails ends the stream; the client resumes
from its ``Last-Event-ID``.

Who may still watch: access is decided when the stream opens, and again every ``recheck``
seconds (``Viewer.still_allowed``: the token not revoked or expired, the person active and
still a member with the same reach). When it fails, the stream ends at once; the reconnect
is then refused (401, or the smaller scope). Each re-check also renews the stream's slot
(``slots.py``: the caps on open streams).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import import_module
from typing import Any

import orjson
import structlog
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet
from django.utils import timezone

from tenants.access import actor_for
from tenants.events import selectors
from tenants.events.models import Event
from tenants.events.services import event_payload
from tenants.events.slots import Slot
from tenants.models import ApiToken

logger = structlog.get_logger(__name__)

#: Events read per poll; a full batch is followed by the next one at once (catching up).
BATCH = 100
#: How long a client waits before reconnecting (the ``retry`` field), in milliseconds.
RETRY_MS = 1000
KEEPALIVE = b": keepalive\n\n"
#: Polls between hand-backs of the database connection (and after any failed query).
HAND_BACK_EVERY = 30


def frame(payload: dict[str, Any]) -> bytes:
    """One event as a server-sent event. orjson writes no newline, so ``data`` is one line."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        payload["id"],
        str(payload["kind"]).encode(),
        orjson.dumps(payload),
    )


def _hand_back(connection: BaseDatabaseWrapper) -> None:
    """The connection as at the end of a request: closed if broken or obsolete. Inside a
    transaction someone else opened (a test's) it is not ours to close."""
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()


@dataclass(frozen=True)
class Viewer:
    """Who watches, as decided when the stream opened: what is checked again while it runs."""

    user_id: int
    #: The API token it came with; None: a session (``session_key``).
    token_id: int | None
    session_key: str | None
    #: The tenants it sees; None: every tenant (the provider's people).
    visible: frozenset[int] | None
    read_roles: frozenset[str]

    @classmethod
    def of(cls, request: Any, read_roles: frozenset[str]) -> Viewer:
        token = request.auth if isinstance(request.auth, ApiToken) else None
        session = getattr(request, "session", None)
        visible = actor_for(request.user).visible_tenant_ids()
        return cls(
            user_id=int(request.user.pk),
            token_id=token.pk if token is not None else None,
            session_key=None if token is not None or session is None else session.session_key,
            visible=None if visible is None else frozenset(visible),
            read_roles=read_roles,
        )

    @property
    def credential(self) -> str:
        """Whose open streams the per-credential cap counts (a session's: its user's)."""
        return f"token:{self.token_id}" if self.token_id is not None else f"user:{self.user_id}"

    def tenants(self) -> list[int | None]:
        """The tenants whose caps the stream counts against (None: the provider's people)."""
        if self.visible is None:
            return [None]
        return [*sorted(self.visible)]

    def still_allowed(self) -> bool:
        """Whether the stream may go on: the credential still valid, the person active and
        still able to read the events, of at least the tenants it saw when it opened."""
        user = get_user_model().objects.filter(pk=self.user_id, is_active=True).first()
        if user is None:
            return False
        if self.token_id is not None:
            valid = ApiToken.objects.filter(
                pk=self.token_id,
                user_id=self.user_id,
                revoked_at__isnull=True,
                expires_at__gt=timezone.now(),
            )
            if not valid.exists():
                return False
        elif self.session_key is not None:
            store = import_module(settings.SESSION_ENGINE).SessionStore
            if not store().exists(self.session_key):  # logged out
                return False
        actor = actor_for(user)  # a fresh user: the memberships as they are now
        if not actor.can_read(self.read_roles):
            return False
        now_visible = actor.visible_tenant_ids()
        if self.visible is None:
            return now_visible is None
        return now_visible is None or self.visible <= now_visible


class Stream:
    """The frames of one watch, handed to the response. ``close()`` (called by the server at
    the end of the response, whether or not the body was read: a HEAD) gives its slot back;
    the frames' own end does too."""

    def __init__(self, frames: Iterator[bytes], slot: Slot | None) -> None:
        self.frames = frames
        self.slot = slot

    def __iter__(self) -> Iterator[bytes]:
        return self.frames

    def close(self) -> None:
        try:
            close = getattr(self.frames, "close", None)
            if close is not None:
                close()
        finally:
            if self.slot is not None:
                self.slot.release()


def watch(
    events: QuerySet[Event],
    *,
    position: int,
    timeout: float,
    poll: float,
    keepalive: float,
    request_id: str = "",
    viewer: Viewer | None = None,
    recheck: float = math.inf,
    slot: Slot | None = None,
    hand_back_every: int = HAND_BACK_EVERY,
) -> Iterator[bytes]:
    """The frames of ``events`` (already scoped and filtered) after ``position``, as they
    commit, for ``timeout`` seconds, while ``viewer`` may still watch (checked every
    ``recheck`` seconds, which also renews ``slot``)."""
    started = time.monotonic()
    deadline = started + timeout
    next_check = started + recheck
    connection = connections[events.db]
    polls = 0
    try:
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            # First bytes at once: the client sees the answer's headers before any event.
            yield b"retry: %d\n\n" % RETRY_MS
            quiet_since = time.monotonic()
            while True:
                polls += 1
                failed = False
                try:
                    if time.monotonic() >= next_check:
                        next_check = time.monotonic() + recheck
                        if slot is not None:
                            slot.renew()
                        if viewer is not None and not viewer.still_allowed():
                            logger.info("event_stream_access_withdrawn", user_id=viewer.user_id)
                            return
                    batch = list(selectors.after(events, position)[:BATCH])
                except DatabaseError:
                    failed = True
                    logger.warning("event_stream_poll_failed", position=position, exc_info=True)
                    return
                finally:
                    if failed or polls % hand_back_every == 0:
                        _hand_back(connection)
                for event in batch:
                    yield frame(event_payload(event))
                    position = int(event.sequence or position)
                now = time.monotonic()
                if batch:
                    quiet_since = now
                if now >= deadline:
                    return
                if len(batch) == BATCH:
                    continue
                if now - quiet_since >= keepalive:
                    yield KEEPALIVE
                    quiet_since = now
                time.sleep(max(0.0, min(poll, deadline - now, keepalive - (now - quiet_since))))
    finally:
        _hand_back(connection)  # the stream's end is the request's end
        if slot is not None:
            slot.release()
