"""The event log's API: scoped like every read (another tenant's events are not there, 404),
only committed events, in commit order, cursor pages by default, strict filters; and the watch
stream: its refusals, which are JSON before any stream starts, where it starts, the caps on open
streams, the access re-check, and one query per poll. (The stream over a real server:
tests/e2e.)"""

import datetime as dt
import time
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.access import SYSTEM
from tenants.choices import Role
from tenants.errors import TooManyRequests
from tenants.events import selectors, slots, stream
from tenants.events.kinds import EventKind
from tenants.events.models import Event
from tenants.events.services import emit, event_payload
from tenants.models import ApiToken, Membership
from tenants.services.changes import ChangeContext, delete_object
from tenants.services.tokens import revoke_token
from tests.support.api import assert_error_body
from tests.support.events import commit_events, defer_events, events_of, parse_stream
from tests.support.schema import assert_conforms, openapi_schema

pytestmark = pytest.mark.django_db

STREAM = "text/event-stream"


@pytest.fixture
def log(fleet):
    """One event of each tenant's and one of the provider's, numbered (committed)."""
    events = {
        "alpha": emit(
            EventKind.WORKFLOW_CREATED, fleet.sites["alpha"], tenant=fleet.alpha, data={"n": 1}
        ),
        "beta": emit(EventKind.FAULT_OPENED, fleet.sites["beta"], tenant=fleet.beta),
        "provider": emit(EventKind.WEBHOOK_DISABLED, fleet.alpha, tenant=None),
        "alpha2": emit(EventKind.FAULT_OPENED, fleet.servers["alpha"], tenant=fleet.alpha.pk),
    }
    commit_events()
    for event in events.values():
        event.refresh_from_db()
    return events


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


def test_a_tenant_sees_its_own_events_the_provider_all(fleet, log):
    mine = fleet.client("alpha_viewer").get("/api/v1/events/")
    assert ids(mine) == [log["alpha"].sequence, log["alpha2"].sequence]
    assert_conforms(mine)
    assert mine.json()["results"][0] == event_payload(log["alpha"])
    everything = fleet.client("provider_admin").get("/api/v1/events/")
    assert ids(everything) == sorted(e.sequence for e in log.values())
    assert ids(fleet.client("beta_viewer").get("/api/v1/events/")) == [log["beta"].sequence]


def test_another_tenants_event_is_404_and_an_event_is_retrieved_by_its_id(fleet, log):
    client = fleet.client("alpha_viewer")
    for other in ("beta", "provider"):
        missing = client.get(f"/api/v1/events/{log[other].sequence}/")
        assert_error_body(missing, 404)
    own = client.get(f"/api/v1/events/{log['alpha'].sequence}/")
    assert own.status_code == 200 and own.json() == event_payload(log["alpha"])
    assert own.headers["ETag"]
    assert_conforms(own)
    assert_error_body(client.get(f"/api/v1/events/{2**70}/"), 404)
    assert_error_body(client.get("/api/v1/events/nope/"), 404)


def test_an_event_not_yet_committed_is_never_shown(fleet, log):
    defer_events()
    pending = emit(EventKind.WORKFLOW_CREATED, fleet.sites["alpha"], tenant=fleet.alpha)
    pending.refresh_from_db()
    assert pending.sequence is None  # its transaction (the test's) has not committed
    committed = sorted(e.sequence for e in log.values())
    assert ids(fleet.client("provider_admin").get("/api/v1/events/")) == committed
    assert ids(fleet.client("alpha_viewer").get("/api/v1/events/?kind=workflow.created")) == [
        log["alpha"].sequence
    ]


def test_filters_are_strict_and_after_pages_by_id(fleet, log):
    client = fleet.client("provider_admin")
    seq = {name: e.sequence for name, e in log.items()}
    assert ids(client.get(f"/api/v1/events/?after={seq['beta']}")) == [
        seq["provider"],
        seq["alpha2"],
    ]
    assert ids(client.get("/api/v1/events/?kind=fault.opened")) == [seq["beta"], seq["alpha2"]]
    assert ids(client.get("/api/v1/events/?kind__in=webhook.disabled,workflow.created")) == [
        seq["alpha"],
        seq["provider"],
    ]
    server = fleet.servers["alpha"]
    assert ids(client.get(f"/api/v1/events/?subject_type=ultraserver&subject_id={server.pk}")) == [
        seq["alpha2"]
    ]
    assert ids(client.get("/api/v1/events/?tenant=beta")) == [seq["beta"]]
    assert ids(client.get("/api/v1/events/?tenant__isnull=true")) == [seq["provider"]]
    for query, field in [
        ("colour=red", "colour"),
        ("after=-1", "after"),
        ("after=soon", "after"),
        ("kind=fault.exploded", "kind"),
        ("ordering=-id", "ordering"),
    ]:
        body = assert_error_body(client.get(f"/api/v1/events/?{query}"), 400)
        assert body["errors"][0]["field"] == field, (query, body)


def test_cursor_pages_and_shaped_answers(fleet, log):
    client = fleet.client("provider_admin")
    first = client.get("/api/v1/events/?cursor=&limit=3").json()
    second = client.get(first["next"]).json()
    seen = [e["id"] for e in first["results"] + second["results"]]
    assert seen == sorted(e.sequence for e in log.values())
    # cursor pages are the default: no count (no COUNT(*) over the whole log), a next link
    default = client.get("/api/v1/events/?limit=3")
    assert_conforms(default)
    assert set(default.json()) == {"next", "previous", "results"}
    assert [e["id"] for e in default.json()["results"]] == seen[:3]
    assert "cursor=" in default.json()["next"] and default.json()["previous"] is None
    assert client.get(default.json()["next"]).json()["results"] == second["results"]
    offsets = client.get("/api/v1/events/?limit=3&offset=0").json()
    assert offsets["count"] == len(log) and "offset=3" in offsets["next"]
    brief = client.get("/api/v1/events/?brief=true&limit=1").json()["results"][0]
    assert set(brief) == {"id", "url", "display", "kind", "occurred_at"}
    assert brief["url"].endswith(f"/api/v1/events/{brief['id']}/")
    assert client.get(brief["url"]).status_code == 200


def test_the_watch_stream_is_refused_in_json_before_it_starts(fleet, log):
    anonymous = APIClient().get("/api/v1/events/watch/", HTTP_ACCEPT=STREAM)
    assert assert_error_body(anonymous, 401)
    assert anonymous["Content-Type"].startswith("application/json")
    client = fleet.client("alpha_viewer")
    for query, field in [
        ("timeout=0", "timeout"),
        ("timeout=301", "timeout"),
        ("timeout=soon", "timeout"),
        ("after=x", "after"),
        ("limit=5", "limit"),  # the stream does not page
        ("fields=id", "fields"),  # nor shape its frames
        ("brief=true", "brief"),
        ("brief", "brief"),
    ]:
        refused = client.get(f"/api/v1/events/watch/?{query}", HTTP_ACCEPT=STREAM)
        assert assert_error_body(refused, 400)["errors"][0]["field"] == field, query
    for bad in ("abc", "-1", "1.5", str(2**64)):
        refused = client.get("/api/v1/events/watch/", HTTP_ACCEPT=STREAM, HTTP_LAST_EVENT_ID=bad)
        assert assert_error_body(refused, 400)["errors"][0]["field"] == "Last-Event-ID", bad


def test_the_watch_stream_sends_the_callers_events_after_last_event_id(fleet, log):
    client = fleet.client("alpha_viewer")
    response = client.get(
        "/api/v1/events/watch/?timeout=1",
        HTTP_ACCEPT=STREAM,
        HTTP_LAST_EVENT_ID=str(log["alpha"].sequence),
    )
    assert response.status_code == 200
    assert response["Content-Type"] == STREAM and response["Cache-Control"] == "no-cache"
    frames, _ = parse_stream(b"".join(response.streaming_content).decode())
    assert frames[0].retry is not None
    sent = events_of(frames)
    assert [(f.id, f.event) for f in sent] == [(log["alpha2"].sequence, "fault.opened")]
    assert sent[0].data == event_payload(log["alpha2"])
    head = client.head("/api/v1/events/watch/?timeout=1", HTTP_ACCEPT=STREAM)
    assert head.status_code == 200 and b"".join(head.streaming_content) == b""


def watched(response) -> list[int]:
    """The ids of the events a (finished) watch stream sent."""
    assert response.status_code == 200, response.content
    frames, _ = parse_stream(b"".join(response.streaming_content).decode())
    return [f.id for f in events_of(frames)]


def test_the_watch_stream_starts_at_the_newest_event_unless_told(fleet, log):
    client = fleet.client("alpha_viewer")
    assert watched(client.get("/api/v1/events/watch/?timeout=1", HTTP_ACCEPT=STREAM)) == []
    assert watched(client.get("/api/v1/events/watch/?timeout=1&after=0", HTTP_ACCEPT=STREAM)) == [
        log["alpha"].sequence,
        log["alpha2"].sequence,
    ]
    assert selectors.newest_position() == max(e.sequence for e in log.values())


def test_the_watch_schema_documents_the_caps_and_the_limits():
    operation = openapi_schema()["paths"]["/api/v1/events/watch/"]["get"]
    timeout = next(p for p in operation["parameters"] if p["name"] == "timeout")
    assert timeout["schema"]["maximum"] == 300
    names = {p["name"] for p in operation["parameters"]}
    assert not names & {"fields", "brief", "limit", "offset", "cursor"}
    refused = operation["responses"]["429"]
    assert "too_many_streams" in refused["description"]
    assert refused["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert refused["headers"]["Retry-After"]["schema"]["type"] == "integer"
    assert "addEventListener" in operation["description"]
    assert "`after=0`" in operation["description"]


@pytest.fixture
def caps(settings):
    """Stream caps counted under a key prefix of this test's own (the Redis outlives runs)."""
    settings.EVENTS_WATCH_KEY_PREFIX = f"eventstreams-test-{uuid.uuid4().hex}"
    return settings


def open_stream(client, **headers):
    return client.get("/api/v1/events/watch/?timeout=1", HTTP_ACCEPT=STREAM, **headers)


def test_open_streams_are_capped_per_token_and_per_tenant(fleet, log, caps):
    caps.EVENTS_WATCH_MAX_PER_TOKEN = 2
    caps.EVENTS_WATCH_MAX_PER_TENANT = 3
    viewer = fleet.client("alpha_viewer")
    held = [open_stream(viewer), open_stream(viewer)]  # open: their bodies not read yet
    assert [r.status_code for r in held] == [200, 200]
    refused = open_stream(viewer)
    body = assert_error_body(refused, 429)
    assert body["code"] == "too_many_streams" and "credential" in body["message"].lower()
    assert refused["Content-Type"].startswith("application/json")
    assert 1 <= int(refused["Retry-After"]) <= 2  # when the first of them is due to end
    # another token of the tenant has its own count, up to the tenant's cap
    other = fleet.client("alpha_operator")
    held.append(open_stream(other))
    assert held[-1].status_code == 200
    tenant_full = assert_error_body(open_stream(fleet.client("alpha_admin")), 429)
    assert "tenant" in tenant_full["message"]
    assert slots.open_streams([fleet.alpha.pk, fleet.beta.pk]) == [3, 0]
    assert open_stream(fleet.client("beta_viewer")).status_code == 200  # beta is not alpha
    # a stream that ends gives its slot back
    watched(held.pop(0))
    assert slots.open_streams([fleet.alpha.pk]) == [2]
    again = open_stream(viewer)
    assert again.status_code == 200
    watched(again)
    # a HEAD, whose body is never sent, gives its slot back with the response
    head = viewer.head("/api/v1/events/watch/?timeout=1", HTTP_ACCEPT=STREAM)
    assert head.status_code == 200 and b"".join(head.streaming_content) == b""
    assert slots.open_streams([fleet.alpha.pk]) == [2]
    for response in held:
        watched(response)
    assert slots.open_streams([fleet.alpha.pk]) == [0]


def test_a_killed_workers_slots_lapse_with_their_lease(fleet, caps):
    caps.EVENTS_WATCH_MAX_PER_TOKEN = 1
    caps.EVENTS_WATCH_RECHECK_SECONDS = 0  # the shortest lease: 30 s
    taken = slots.acquire("token:lost", [fleet.alpha.pk], 60)
    with pytest.raises(TooManyRequests):
        slots.acquire("token:lost", [fleet.alpha.pk], 60)
    taken.released = True  # the process died: it never gives the slot back
    slots._process.give_back()
    later = time.time() + slots.lease_seconds() + 1
    assert slots._sets().count([slots.credential_key("token:lost")], later) == [0]


def viewer_of(fleet, who: str) -> tuple[stream.Viewer, ApiToken]:
    """Who watches with ``who``'s newest token, as the view sees them when a stream opens."""
    person = fleet.people[who]
    token = ApiToken.objects.filter(user=person).order_by("-pk").first()
    assert token is not None
    tenants = person.memberships.values_list("tenant_id", flat=True)
    viewer = stream.Viewer(
        user_id=person.pk,
        token_id=token.pk,
        session_key=None,
        visible=frozenset(t for t in tenants if t is not None),
        read_roles=frozenset(Role),
    )
    return viewer, token


def test_an_open_stream_ends_when_its_token_or_membership_goes(fleet, log):
    fleet.client("alpha_viewer")
    fleet.client("alpha_operator")
    ctx = ChangeContext(SYSTEM)
    viewer, token = viewer_of(fleet, "alpha_viewer")
    assert viewer.still_allowed()
    events = selectors.committed().filter(tenant=fleet.alpha)
    frames = stream.watch(
        events, position=0, timeout=30, poll=0.01, keepalive=30, viewer=viewer, recheck=0.05
    )
    assert next(frames).startswith(b"retry:")
    assert len([next(frames) for _ in range(2)]) == 2  # alpha's two events
    revoke_token(token, ctx)
    started = time.monotonic()
    assert list(frames) == []  # ended at the next re-check, long before its timeout
    assert time.monotonic() - started < 5
    assert not viewer.still_allowed()

    operator, token = viewer_of(fleet, "alpha_operator")
    assert operator.still_allowed()
    token.expires_at = timezone.now()
    token.save(update_fields=["expires_at"])
    assert not operator.still_allowed()  # expired
    token.expires_at = timezone.now() + dt.timedelta(days=1)
    token.save(update_fields=["expires_at"])
    assert operator.still_allowed()
    delete_object(Membership.objects.get(user=fleet.people["alpha_operator"]), ctx)
    assert not operator.still_allowed()  # no longer a member of alpha


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_poll_is_one_query_and_the_connection_is_handed_back_every_n_polls(monkeypatch):
    """With connection health checks on (as in production), handing the connection back after
    each poll re-arms the check: a ``SELECT 1`` before every poll. Handed back only every n
    polls, a poll is its one query."""
    for n in (1, 2):
        Event.objects.create(kind=EventKind.WORKFLOW_CREATED, subject_type="site", subject_id=n)
    settings_dict = connection.settings_dict
    saved = settings_dict["CONN_MAX_AGE"], settings_dict["CONN_HEALTH_CHECKS"]
    settings_dict["CONN_MAX_AGE"], settings_dict["CONN_HEALTH_CHECKS"] = 600, True
    connection.close()  # reconnect with these
    health_checks = []
    is_usable = connection.is_usable

    def counted() -> bool:
        health_checks.append(1)
        return is_usable()

    monkeypatch.setattr(connection, "is_usable", counted)
    try:
        for hand_back_every in (10_000, 1):
            health_checks.clear()
            with CaptureQueriesContext(connection) as queries:
                frames = list(
                    stream.watch(
                        selectors.committed(),
                        position=0,
                        timeout=0.3,
                        poll=0.01,
                        keepalive=30,
                        hand_back_every=hand_back_every,
                    )
                )
            assert len(events_of(parse_stream(b"".join(frames).decode())[0])) == 2
            assert all('"events_event"' in q["sql"] for q in queries.captured_queries)
            if hand_back_every == 1:  # as before: a health check before (almost) every poll
                assert len(health_checks) >= len(queries) - 1
            else:
                assert len(queries) > 5 and health_checks == [], health_checks
    finally:
        settings_dict["CONN_MAX_AGE"], settings_dict["CONN_HEALTH_CHECKS"] = saved
        connection.close()


def test_without_redis_the_caps_hold_in_the_process_and_an_unreachable_redis_serves(fleet, caps):
    caps.EVENTS_WATCH_MAX_PER_TOKEN = 1
    caps.REDIS_URL = ""  # runserver, the embedded default: this process's own sets
    first = slots.acquire("token:local", [fleet.alpha.pk], 60)
    with pytest.raises(TooManyRequests):
        slots.acquire("token:local", [fleet.alpha.pk], 60)
    assert slots.open_streams([fleet.alpha.pk]) == [1]
    first.release()
    first.release()  # twice: nothing more given back
    slots.acquire("token:local", [fleet.alpha.pk], 60).release()
    assert slots.open_streams([fleet.alpha.pk]) == [0]
    # Redis not answering: served uncounted (as the rate limits), the process cap still holds
    caps.REDIS_URL = "redis://127.0.0.1:1/0"
    caps.EVENTS_WATCH_MAX_PER_PROCESS = slots.open_in_process() + 1
    uncounted = slots.acquire("token:local", [fleet.alpha.pk], 60)
    assert not uncounted.counted
    with pytest.raises(TooManyRequests) as refused:
        slots.acquire("token:other", [fleet.beta.pk], 60)
    assert refused.value.code == "too_many_streams" and refused.value.retry_after
    uncounted.release()
    slots.acquire("token:other", [fleet.beta.pk], 60).release()
