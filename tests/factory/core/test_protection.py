"""Protection of every endpoint: rate limits per credential, body size limits, JSON nesting
limits, numbers past 64 bits, and HEAD answers without a body."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import wsgiref.util

import orjson
import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.http import FileResponse
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from factory import wire
from factory.core.errors import DomainErrorMiddleware
from factory.core.limits import json_depth_exceeds
from factory.core.middleware import HeadWithoutBodyMiddleware
from factory.inventory.api.views import RackViewSet
from factory.siteagent.agent import MAX_BATCH_REPORTS
from factory.telemetry import egress
from factory.wire import Metric
from tenants.models import ApiToken
from tests.support.api import assert_error_body, gateway, rate_limits
from tests.support.telemetry import agent_client, post, server_report

RACKS = "/api/v1/racks/"
BIG = "99999999999999999999"  # past 64 bits


@pytest.fixture(autouse=True)
def _fresh_egress_decisions():
    egress.forget()
    yield
    egress.forget()


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


# --- rate limits ------------------------------------------------------------------------------


def test_a_token_over_its_rate_is_429_with_retry_after_and_ratelimit_headers(fleet, settings):
    rate_limits(settings, token="3/hour")
    client = fleet.client("alpha_viewer")
    for remaining in (2, 1):
        response = client.get(RACKS)
        assert response.status_code == 200
        assert response["RateLimit-Limit"] == "3"
        assert response["RateLimit-Remaining"] == str(remaining)
        assert 1 <= int(response["RateLimit-Reset"]) <= 3600
    # Every answer of a counted request carries them, refusals included.
    missing = client.get(f"{RACKS}{fleet.racks['beta'].pk}/")
    assert missing.status_code == 404 and missing["RateLimit-Remaining"] == "0"

    refused = client.get(RACKS)
    body = assert_error_body(refused, 429)
    assert body["code"] == "throttled"
    assert "3 requests per 3600 s for this API token" in body["message"]
    assert 1 <= int(refused["Retry-After"]) <= 3600
    assert refused["RateLimit-Limit"] == "3" and refused["RateLimit-Remaining"] == "0"
    assert refused["RateLimit-Reset"] == refused["Retry-After"]
    # Each token has its own budget, even the same person's.
    assert fleet.client("alpha_viewer").get(RACKS).status_code == 200


def test_refused_tokens_from_one_address_are_429_past_their_budget(fleet, settings):
    """A 401 comes before any throttle: unknown, revoked or made-up tokens are counted per
    client address on their own, and past that budget answered 429 with Retry-After. A valid
    token is never counted there, nor refused for it, from that address or any other."""
    rate_limits(settings, refused="3/hour")
    here, elsewhere = "198.51.100.7", "198.51.100.8"
    guesser = APIClient(REMOTE_ADDR=here)
    guesser.credentials(HTTP_AUTHORIZATION="Bearer afc_made-up")
    answers = [guesser.get(RACKS) for _ in range(3)]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert answers[0]["RateLimit-Limit"] == "3" and answers[2]["RateLimit-Remaining"] == "0"
    refused = guesser.get(RACKS)
    body = assert_error_body(refused, 429)
    assert body["code"] == "throttled" and "refused credentials" in body["message"]
    assert 1 <= int(refused["Retry-After"]) <= 3600
    malformed = APIClient(REMOTE_ADDR=here)
    malformed.credentials(HTTP_AUTHORIZATION="Bearer two parts")
    assert assert_error_body(malformed.get(RACKS), 429)["code"] == "throttled"
    # A valid token from the same address: served, and not counted.
    valid = fleet.client("alpha_viewer")
    valid.defaults["REMOTE_ADDR"] = here
    for _ in range(4):
        assert valid.get(RACKS).status_code == 200
    # Another address has a budget of its own.
    other = APIClient(REMOTE_ADDR=elsewhere)
    other.credentials(HTTP_AUTHORIZATION="Bearer afc_made-up")
    assert assert_error_body(other.get(RACKS), 401)["code"] == "invalid_token"


def test_counts_are_kept_in_the_shared_cache(fleet, settings):
    prefix = rate_limits(settings, token="5/hour")
    client = fleet.client("alpha_viewer")
    client.get(RACKS)
    client.get(RACKS)
    cache = caches[settings.RATE_LIMIT_CACHE]
    assert "RedisCache" in type(cache).__name__  # the test settings' REDIS_URL: every worker's
    keys = [k for k in cache._cache.get_client().keys(f"*{prefix}:token:*")]
    assert len(keys) == 1 and int(cache._cache.get_client().get(keys[0])) == 2


def test_a_session_is_limited_per_user(fleet, settings):
    rate_limits(settings, user="2/hour")
    client = APIClient()
    client.force_login(fleet.people["alpha_viewer"])
    assert [client.get(RACKS).status_code for _ in range(3)] == [200, 200, 429]
    other = APIClient()
    other.force_login(fleet.people["alpha_viewer"])  # another session, the same user
    assert other.get(RACKS).status_code == 429
    assert fleet.client("alpha_viewer").get(RACKS).status_code == 200  # a token: its own


def test_agents_have_their_own_budget_and_telemetry_a_larger_one(fleet, settings):
    rate_limits(settings, agent="2/hour", telemetry="1000/hour")
    client, _ = agent_client(fleet.sites["alpha"])
    server = fleet.servers["alpha"]
    answers = [client.get(gateway(wire.CONFIG_PATH)) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0]["RateLimit-Limit"] == "2"
    assert "this site agent" in assert_error_body(answers[2], 429)["message"]
    # Telemetry keeps flowing when the rest of the agent's budget is spent.
    for sequence in (1, 2, 3):
        sent = post(client, [server_report(server.serial, sequence)])
        assert sent.status_code == 200, sent.content
    assert sent["RateLimit-Limit"] == "1000" and sent["RateLimit-Remaining"] == "997"


def test_an_unreachable_cache_lets_requests_through(fleet, settings):
    rate_limits(settings, token="1/hour")
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        },
    }
    settings.RATE_LIMIT_CACHE = "down"
    client = fleet.client("alpha_viewer")
    answers = [client.get(RACKS) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert "RateLimit-Limit" not in answers[0]


def test_unlimited_scopes_and_plain_django_views_carry_no_headers(fleet, settings):
    rate_limits(settings, token="off")
    response = fleet.client("alpha_viewer").get(RACKS)
    assert response.status_code == 200 and "RateLimit-Limit" not in response
    health = APIClient().get("/healthz")
    assert health.status_code == 200 and "RateLimit-Limit" not in health


def test_a_bad_rate_fails_the_system_check(settings):
    from factory.core.apps import check_limits

    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "token": "lots"}
    errors = check_limits(None)
    assert [e.id for e in errors] == ["core.E001"] and "token" in errors[0].msg


# --- body size --------------------------------------------------------------------------------


def test_a_body_over_the_api_limit_is_413_naming_the_limit_before_it_is_read(fleet):
    client = fleet.client("provider_admin")
    body = b'{"name": "' + b"x" * (10 * 1024 * 1024) + b'"}'  # 10 MB
    response = client.post(RACKS, data=body, content_type="application/json")
    error = assert_error_body(response, 413)
    assert error["code"] == "too_large"
    assert "at most 1,048,576 bytes (1 MiB)" in error["message"]
    assert "10,485,7" in error["message"]  # its own size


def test_the_limit_is_the_setting_exactly(fleet, settings):
    settings.REQUEST_MAX_BODY_BYTES = 2000
    client = fleet.client("provider_admin")
    site = fleet.sites["alpha"].pk

    def payload(size: int) -> bytes:
        head = orjson.dumps({"site": site, "name": "R-SIZE", "description": ""})[:-2]
        return head + b" " * (size - len(head) - 2) + b'"}'

    assert len(payload(2000)) == 2000
    at_limit = client.post(RACKS, data=payload(2000), content_type="application/json")
    assert at_limit.status_code != 413
    over = client.post(RACKS, data=payload(2001), content_type="application/json")
    assert "at most 2,000 bytes" in assert_error_body(over, 413)["message"]


def test_the_console_answers_a_body_too_large_with_its_html_page(fleet):
    response = APIClient().post(
        "/console/login/", data=b"x" * (2 * 1024 * 1024), content_type="text/plain"
    )
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/html")


def _realistic_batch(serial: str, reports: int) -> bytes:
    """The biggest batch a site agent sends: MAX_BATCH_REPORTS reports of 144 chips, each
    measurement with full float precision and each counter months old, serialized as the agent
    does (``json.dumps``)."""
    rng = random.Random(7)
    now = dt.datetime.now(dt.UTC)

    def floats(low: float, high: float) -> list[float]:
        return [rng.uniform(low, high) for _ in range(144)]

    def counts(high: int) -> list[int]:
        return [rng.randrange(high) for _ in range(144)]

    batch = [
        server_report(
            serial,
            sequence,
            now - dt.timedelta(seconds=10 * sequence),
            **{
                Metric.POWER_W: floats(600, 1000),
                Metric.ENERGY_J: floats(1e10, 9e10),
                Metric.TEMP_C: floats(50, 80),
                Metric.UTILIZATION: floats(0, 1),
                Metric.HBM_USED_GB: floats(50, 130),
                Metric.ECC_CORRECTED: counts(10**7),
                Metric.ECC_UNCORRECTED: counts(1000),
                Metric.LINK_ERRORS: counts(10**7),
                Metric.LINK_DOWN_S: floats(0, 1000),
                Metric.THROTTLE_S: floats(0, 1000),
            },
        )
        for sequence in range(1, reports + 1)
    ]
    return json.dumps(wire.TelemetryBatch(reports=batch)).encode()


def test_the_largest_telemetry_batch_an_agent_sends_is_taken_a_bigger_one_is_413(fleet, settings):
    client, _ = agent_client(fleet.sites["alpha"])
    body = _realistic_batch(fleet.servers["alpha"].serial, MAX_BATCH_REPORTS)
    # Over the rest of the API's limit, well under telemetry's.
    assert settings.REQUEST_MAX_BODY_BYTES < len(body) < settings.TELEMETRY_MAX_BATCH_BYTES / 4
    taken = post(client, body)
    assert taken.status_code == 200, taken.content[:500]
    assert taken.json()["accepted"] == MAX_BATCH_REPORTS

    too_big = b" " * (settings.TELEMETRY_MAX_BATCH_BYTES + 1)
    error = assert_error_body(post(client, too_big), 413)
    assert f"at most {settings.TELEMETRY_MAX_BATCH_BYTES:,} bytes (8 MiB)" in error["message"]
    # The agent's other endpoints have the API's limit.
    events = client.post(
        gateway(wire.EVENTS_PATH), data=b" " * (2 * 1024 * 1024), content_type="application/json"
    )
    assert_error_body(events, 413)


# --- JSON nesting -----------------------------------------------------------------------------


def test_json_depth_is_counted_outside_strings():
    assert not json_depth_exceeds(nested(64), 64)
    assert json_depth_exceeds(nested(65), 64)
    assert not json_depth_exceeds(b'{"a": "[[[[[[\\"[[[[{{{{"}', 2)
    assert not json_depth_exceeds(b'["\\\\", "\\\\\\"[[[["]', 1)  # escaped \ and "
    assert json_depth_exceeds(b'{"a": [{"b": ["]]]"]}]}', 3)
    assert not json_depth_exceeds(b'{"a": [{"b": ["]]]"]}]}', 4)
    # Siblings do not add up; depth is the deepest path.
    assert not json_depth_exceeds(b"[" + b",".join([nested(63)] * 1000) + b"]", 64)
    assert json_depth_exceeds(b"[" + b",".join([nested(63)] * 999 + [nested(64)]) + b"]", 64)
    # Never closed: the parser would descend into them before refusing.
    assert json_depth_exceeds(b"[" * 100, 64)
    assert not json_depth_exceeds(b"[" * 64, 64)
    assert not json_depth_exceeds(b"", 1)


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_json_nested_too_deep_is_400_too_deep_on_the_api(fleet, depth):
    response = fleet.client("provider_admin").post(
        RACKS, data=nested(depth), content_type="application/json"
    )
    body = assert_error_body(response, 400)
    assert body["code"] == "too_deep" and "64 levels" in body["message"]


def test_json_at_the_depth_limit_is_parsed(fleet):
    body = b'{"site": ' + nested(63) + b', "name": "R-DEEP"}'  # 64 levels with the object
    response = fleet.client("provider_admin").post(
        RACKS, data=body, content_type="application/json"
    )
    error = assert_error_body(response, 400)
    assert error["code"] == "invalid" and error["errors"][0]["field"] == "site"


def test_json_nested_too_deep_is_400_on_the_agent_gateway(fleet):
    client, _ = agent_client(fleet.sites["alpha"])
    for path in (wire.EVENTS_PATH, wire.RESULTS_PATH, wire.CLAIM_PATH):
        response = client.post(gateway(path), data=nested(5000), content_type="application/json")
        assert assert_error_body(response, 400)["code"] == "too_deep", path
    telemetry = post(client, b'{"reports": [' + nested(5000, b"{}") + b"]}")
    assert assert_error_body(telemetry, 400)["errors"][0]["code"] == "too_deep"


def test_a_recursion_error_is_never_a_500(fleet, settings):
    """The guard off, the stdlib parser recurses until it fails: still a 400, not a 500."""
    settings.JSON_MAX_DEPTH = 10**9
    response = fleet.client("provider_admin").post(
        RACKS, data=nested(100_000), content_type="application/json"
    )
    assert assert_error_body(response, 400)["code"] == "too_deep"
    # And in plain Django views (the console, the admin): the console's 400 page.
    request = RequestFactory().post("/console/anything/")
    page = DomainErrorMiddleware(lambda r: None).process_exception(request, RecursionError())
    assert page.status_code == 400 and page["Content-Type"].startswith("text/html")


# --- numbers past 64 bits ---------------------------------------------------------------------


def test_an_overflow_the_database_driver_raises_is_400_naming_the_parameter(fleet, monkeypatch):
    """What SQLite's driver raises for an integer past 64 bits (PostgreSQL compares it as
    numeric instead), answered by the one exception handler."""

    def overflow(self, queryset):
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    monkeypatch.setattr(RackViewSet, "filter_queryset", overflow)
    client = fleet.client("alpha_viewer")
    body = assert_error_body(client.get(f"{RACKS}?tenant={BIG}&limit=5"), 400)
    assert body["code"] == "out_of_range"
    assert [(e["field"], e["code"]) for e in body["errors"]] == [("tenant", "out_of_range")]
    assert "9223372036854775807" in body["errors"][0]["message"]
    in_path = assert_error_body(client.get(f"{RACKS}{BIG}/"), 400)
    assert [e["field"] for e in in_path["errors"]] == ["pk"]
    nowhere = assert_error_body(client.get(RACKS), 400)
    assert nowhere["errors"][0]["field"] is None


@pytest.mark.parametrize(
    "url",
    [
        f"{RACKS}{BIG}/",
        f"{RACKS}?offset={BIG}",
        f"{RACKS}?limit={BIG}",
        f"/api/v1/chips/?index={BIG}",
    ],
)
def test_numbers_past_64_bits_are_never_a_500(fleet, url):
    assert fleet.client("provider_admin").get(url).status_code in (200, 400, 404)


# --- HEAD -------------------------------------------------------------------------------------


def wsgi(method: str, path: str, **environ) -> tuple[str, dict[str, str], bytes]:
    """One request through the WSGI application, as gunicorn calls it (the test client drops
    HEAD bodies itself, so it cannot tell). Like the test client, it leaves the database
    connection open: closing it at the request's start or end would end the test's
    transaction, and every later query in it (a token's look-up) would be a 500."""
    env = {"REQUEST_METHOD": method, "wsgi.input": io.BytesIO(b""), **environ}
    path, _, query = path.partition("?")
    env.update(PATH_INFO=path, QUERY_STRING=query)
    wsgiref.util.setup_testing_defaults(env)
    answer: dict = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(headers)

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        chunks = WSGIHandler()(env, start_response)
        try:
            body = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return answer["status"], answer["headers"], body


def session_cookie(person) -> str:
    client = Client()
    client.force_login(person)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/readyz",
        RACKS,
        "/api/v1/",
        "/console/login/",
        "/admin/login/",
        "/nowhere",
        # console pages of a logged-in person that also take a POST
        "/console/tokens/",
        "/console/tokens/{token}/revoke/",
    ],
)
def test_head_is_the_get_answer_without_its_body(fleet, path):
    person = fleet.people["alpha_viewer"]
    _, token = fleet.client("alpha_viewer")._credentials["HTTP_AUTHORIZATION"].split()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    if path.startswith("/console/tokens/"):
        auth["HTTP_COOKIE"] = session_cookie(person)
        path = path.format(token=ApiToken.objects.filter(user=person).get().pk)
    get_status, get_headers, get_body = wsgi("GET", path, **auth)
    status, headers, body = wsgi("HEAD", path, **auth)
    assert body == b""
    assert status == get_status
    assert int(status[:3]) < 500, (status, get_body[:300])
    if path.startswith("/console/tokens/"):
        assert status.startswith("200"), status  # the page itself, not the log-in or a 405
    assert int(headers["Content-Length"]) == len(get_body) > 0
    assert headers["Content-Type"] == get_headers["Content-Type"]
    assert set(headers) == set(get_headers)


@pytest.mark.parametrize("path", ["/favicon.ico", "/static/admin/css/base.css"])
def test_head_of_a_file_has_no_body(db, path):
    _, _, get_body = wsgi("GET", path)
    status, headers, body = wsgi("HEAD", path)
    assert status.startswith("200") and body == b""
    assert int(headers["Content-Length"]) == len(get_body) > 0


def test_head_of_a_streamed_file_sends_nothing_and_still_closes_it(db, tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 100_000)
    handle = open(path, "rb")  # noqa: SIM115 - the response closes it
    response = HeadWithoutBodyMiddleware(lambda request: FileResponse(handle))(
        RequestFactory().head("/file")
    )
    assert response["Content-Length"] == "100000"
    assert response.file_to_stream is None and b"".join(response.streaming_content) == b""
    response.close()
    assert handle.closed


def test_head_through_the_test_client(fleet):
    client = fleet.client("alpha_viewer")
    get, head = client.get(RACKS), client.head(RACKS)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head["Content-Length"] == str(len(get.content))
    assert head["RateLimit-Limit"] == get["RateLimit-Limit"]
