"""The events' watch stream over a real gunicorn (the gthread worker, as ``make up`` and the
compose file run it): read some events, disconnect, miss some, reconnect with
``Last-Event-ID`` and get exactly the rest, in order, with no gap and no repeat, a late
committer included; another tenant's events never arrive; the stream ends at its timeout
with keepalives on the way; refusals are JSON; while streams are open the server still
answers, holding no transaction open; a token's fifth stream is refused (429) until one of its
four ends; and a revoked token's open stream ends."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
import uuid

import pytest
from django.conf import settings
from django.db import connection, transaction

from tenants.access import SYSTEM
from tenants.events.kinds import EventKind
from tenants.events.models import Event
from tenants.events.services import emit
from tenants.models import ApiToken
from tenants.services.changes import ChangeContext
from tenants.services.tokens import issue_token, revoke_token
from tests.support.events import Frame, parse_stream
from tests.support.fleet import build_fleet
from tests.support.processes import app_env, gunicorn

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
STREAM = "text/event-stream"


@pytest.fixture
def server(transactional_db, tmp_path):
    env = app_env(
        settings.REDIS_URL,
        EVENTS_WATCH_POLL_SECONDS="0.2",
        EVENTS_WATCH_KEEPALIVE_SECONDS="1",
        EVENTS_WATCH_RECHECK_SECONDS="0.5",
        EVENTS_WATCH_MAX_PER_PROCESS="6",  # of 8 threads: the token's cap (4) is what refuses
        EVENTS_WATCH_KEY_PREFIX=f"eventstreams-e2e-{uuid.uuid4().hex}",
    )
    with gunicorn(env, tmp_path / "gunicorn.log", workers=1, threads=8) as url:
        yield url


@pytest.fixture
def fleet(transactional_db):
    fleet = build_fleet()
    fleet.tokens = {
        who: issue_token(fleet.people[who], ChangeContext(SYSTEM), name="stream")[1]
        for who in ("alpha_viewer", "beta_viewer")
    }
    return fleet


class Watch:
    """One open watch stream, read frame by frame as the server sends them."""

    def __init__(self, base: str, token: str, query: str = "", last_id: int | None = None):
        url = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=15)
        headers = {"Authorization": f"Bearer {token}", "Accept": STREAM}
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        self.conn.request("GET", f"/api/v1/events/watch/?{query}", headers=headers)
        self.response = self.conn.getresponse()
        self.comments = 0

    def frame(self) -> Frame | None:
        """The next frame with fields (comments counted); None when the stream has ended."""
        block = ""
        while True:
            line = self.response.readline().decode()
            if not line:
                assert not block, f"the stream ended mid-frame: {block!r}"
                return None
            block += line
            if line == "\n":
                frames, comments = parse_stream(block)
                self.comments += comments
                block = ""
                if frames:
                    return frames[0]

    def events(self, n: int) -> list[Frame]:
        got: list[Frame] = []
        while len(got) < n:
            frame = self.frame()
            assert frame is not None, f"the stream ended after {len(got)} of {n} events"
            if frame.data is not None:
                got.append(frame)
        return got

    def close(self) -> None:
        self.conn.close()


def committed(kind: EventKind, subject, tenant, **data) -> int:
    with transaction.atomic():
        event = emit(kind, subject, tenant=tenant, data=data)
    event.refresh_from_db()
    assert event.sequence is not None
    return event.sequence


def alpha_event(fleet, n: int) -> int:
    return committed(EventKind.WORKFLOW_CREATED, fleet.sites["alpha"], fleet.alpha, n=n)


def beta_event(fleet, n: int) -> int:
    return committed(EventKind.FAULT_OPENED, fleet.sites["beta"], fleet.beta, n=n)


def test_a_reconnect_with_last_event_id_gets_exactly_the_rest(server, fleet):
    token = fleet.tokens["alpha_viewer"]
    before = alpha_event(fleet, 0)  # before the stream: not sent (the stream starts after it)
    first = Watch(server, token, "timeout=60", last_id=before)
    assert first.response.status == 200
    assert first.response.getheader("Content-Type") == STREAM
    assert first.response.getheader("X-Request-ID")
    sent = []
    for n in range(1, 4):
        sent.append(alpha_event(fleet, n))
        beta_event(fleet, n)
    read = first.events(2)
    first.close()  # the client goes away after two of the three
    last_seen = read[-1].id
    # Meanwhile: more events, and one whose transaction began before others and commits last.
    holding, release = threading.Event(), threading.Event()

    def late_committer():
        try:
            with transaction.atomic():
                emit(EventKind.FAULT_RESOLVED, fleet.sites["alpha"], tenant=fleet.alpha, data={})
                holding.set()
                release.wait(20)
        finally:
            connection.close()

    worker = threading.Thread(target=late_committer)
    worker.start()
    assert holding.wait(10)
    sent.append(alpha_event(fleet, 4))
    beta_event(fleet, 4)
    second = Watch(server, token, "timeout=60", last_id=last_seen)
    sent.append(alpha_event(fleet, 5))  # while connected again
    release.set()
    worker.join(20)
    late = Event.objects.get(kind=EventKind.FAULT_RESOLVED).sequence
    expected_rest = [s for s in sorted([*sent, late]) if s > last_seen]
    rest = second.events(len(expected_rest))
    second.close()
    assert [f.id for f in read] == sent[:2]
    assert [f.id for f in rest] == expected_rest  # in order: no gap, no repeat
    alpha_log = list(
        Event.objects.filter(tenant=fleet.alpha, sequence__gt=before)
        .order_by("sequence")
        .values_list("sequence", flat=True)
    )
    assert [f.id for f in read + rest] == alpha_log
    assert all(f.data["tenant"] == "alpha" for f in read + rest)
    assert all(f.event == f.data["kind"] and f.id == f.data["id"] for f in read + rest)


def test_another_tenants_events_never_reach_a_stream(server, fleet):
    beta = Watch(server, fleet.tokens["beta_viewer"], "timeout=60")
    alpha_event(fleet, 1)
    alpha_event(fleet, 2)
    mine = beta_event(fleet, 1)
    alpha_event(fleet, 3)
    last = beta_event(fleet, 2)
    got = beta.events(2)
    beta.close()
    assert [f.id for f in got] == [mine, last]
    assert {f.data["tenant"] for f in got} == {"beta"}


def test_the_stream_ends_at_its_timeout_with_keepalives_and_holds_no_transaction(server, fleet):
    watch = Watch(server, fleet.tokens["alpha_viewer"], "timeout=3")
    started = time.monotonic()
    # A stream holds a thread, not the server: other requests are answered meanwhile.
    other = Watch(server, fleet.tokens["beta_viewer"], "timeout=3")
    url = urllib.parse.urlsplit(server)
    plain = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    auth = {"Authorization": f"Bearer {fleet.tokens['alpha_viewer']}"}
    plain.request("GET", "/api/v1/events/", headers=auth)
    assert plain.getresponse().status == 200
    plain.close()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] == 0
    while watch.frame() is not None:
        pass
    elapsed = time.monotonic() - started
    assert 3 <= elapsed < 8, elapsed
    assert watch.comments >= 2  # a keepalive after each quiet second
    watch.close()
    other.close()


def _json(status: int, response: http.client.HTTPResponse) -> dict:
    assert response.status == status
    assert response.getheader("Content-Type").startswith("application/json")
    return json.loads(response.read())


def test_refusals_are_json_before_the_stream_starts(server, fleet):
    url = urllib.parse.urlsplit(server)

    def get(headers: dict, query: str = "") -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        conn.request("GET", f"/api/v1/events/watch/?{query}", headers={"Accept": STREAM, **headers})
        return conn.getresponse()

    assert _json(401, get({}))["status"] == 401
    auth = {"Authorization": f"Bearer {fleet.tokens['alpha_viewer']}"}
    bad_id = _json(400, get({**auth, "Last-Event-ID": "seven"}))
    assert bad_id["errors"][0]["field"] == "Last-Event-ID"
    assert _json(400, get(auth, "timeout=301"))["errors"][0]["field"] == "timeout"
    assert _json(400, get(auth, "colour=red"))["errors"][0]["field"] == "colour"
    assert _json(400, get(auth, "fields=id"))["errors"][0]["field"] == "fields"


def test_a_tokens_fifth_stream_is_refused_until_one_of_its_four_ends(server, fleet):
    token = fleet.tokens["alpha_viewer"]
    open_ = [Watch(server, token, "timeout=60") for _ in range(4)]
    assert [w.response.status for w in open_] == [200] * 4
    assert all(w.frame().retry is not None for w in open_)  # streaming, each on its thread
    fifth = Watch(server, token, "timeout=60")
    body = _json(429, fifth.response)
    assert body["code"] == "too_many_streams"
    assert 1 <= int(fifth.response.getheader("Retry-After")) <= 61
    fifth.close()
    # another tenant's person is not held up by alpha's streams
    beta = Watch(server, fleet.tokens["beta_viewer"], "timeout=60")
    assert beta.response.status == 200
    beta.close()
    # the server answers the rest of the API meanwhile
    url = urllib.parse.urlsplit(server)
    plain = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    plain.request("GET", "/api/v1/events/", headers={"Authorization": f"Bearer {token}"})
    assert plain.getresponse().status == 200
    plain.close()
    # a client that goes away: the server notices at its next write (a keepalive) and the
    # stream's slot is free again
    open_.pop().close()
    deadline = time.monotonic() + 10
    while True:
        again = Watch(server, token, "timeout=60")
        if again.response.status == 200:
            break
        again.close()
        assert time.monotonic() < deadline, "the closed stream's slot never came back"
        time.sleep(0.5)
    again.close()
    for watch in open_:
        watch.close()


def test_a_revoked_tokens_open_stream_ends(server, fleet):
    token = fleet.tokens["alpha_viewer"]
    watch = Watch(server, token, "timeout=60")
    assert watch.response.status == 200
    sent = alpha_event(fleet, 1)
    assert [f.id for f in watch.events(1)] == [sent]
    started = time.monotonic()
    row = ApiToken.objects.get(user=fleet.people["alpha_viewer"], name="stream")
    revoke_token(row, ChangeContext(SYSTEM))
    alpha_event(fleet, 2)  # may or may not go out before the re-check: no more than that
    rest = []
    while (frame := watch.frame()) is not None:
        if frame.data is not None:
            rest.append(frame)
    assert time.monotonic() - started < 5  # ended at a re-check (every 0.5 s), not at 60 s
    assert len(rest) <= 1
    watch.close()
    again = Watch(server, token)
    assert _json(401, again.response)["status"] == 401
    again.close()
