"""Self-service tokens through the API: log in with a password for a token (shown once), failed
log-ins locked out, a token no wider nor longer-lived than the one that made it, revoke, audit."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.errors import Denied
from tenants.models import ApiToken, AuditEvent
from tenants.services import logins
from tenants.services.tokens import issue_token
from tests.support.api import assert_error_body
from tests.support.fleet import CTX

LOGIN = "/api/v1/auth/token/"
PASSWORD = "pw"  # tests.support.fleet's people


@pytest.fixture
def address():
    """A client address of this test's own: failure counts live in the shared cache."""
    return "2001:db8::" + ":".join(secrets.token_hex(2) for _ in range(4))


@pytest.fixture
def anon(address):
    return APIClient(REMOTE_ADDR=address)


def bearer(clear: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {clear}")
    return client


def login(client, username="alpha-operator", password=PASSWORD, **params):
    return client.post(LOGIN, {"username": username, "password": password, "name": "cli", **params})


def test_login_returns_the_token_once_with_its_location_and_it_works(fleet, anon, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "correct-horse-battery-staple"
    fleet.people["alpha_operator"].set_password(secret)
    fleet.people["alpha_operator"].save()
    assert login(anon, password=secret + "!").status_code == 401  # a failure is logged too
    response = login(anon, password=secret, name="laptop", scope="read", days=7)
    assert response.status_code == 201, response.content
    body = response.json()
    clear = body["token"]
    assert clear.startswith("afc_") and body["name"] == "laptop" and body["scope"] == "read"
    assert response["Location"] == f"http://testserver/api/v1/tokens/{body['id']}/"
    assert response["Cache-Control"] == "no-store"
    stored = ApiToken.objects.get(pk=body["id"])
    assert stored.user == fleet.people["alpha_operator"]
    assert stored.digest == hashlib.sha256(clear.encode()).hexdigest()
    assert abs(stored.expires_at - (timezone.now() + dt.timedelta(days=7))) < dt.timedelta(
        minutes=1
    )
    # The token reads (its own list, where the clear token never appears again)...
    client = bearer(clear)
    listed = client.get("/api/v1/tokens/")
    assert listed.status_code == 200
    assert [t["name"] for t in listed.json()["results"]] == ["laptop"]
    assert clear not in listed.content.decode()
    assert client.get(response["Location"]).json()["id"] == body["id"]
    # ... and, read-scoped, creates none.
    denied = client.post("/api/v1/tokens/", {"name": "more"})
    assert assert_error_body(denied, 403)["code"] == "token_read_only"
    # Audited with the person as the actor; neither the password nor the token is logged.
    event = AuditEvent.objects.get(object_type="tenants.apitoken", object_id=str(stored.pk))
    assert (event.action, event.source, event.actor_username) == ("create", "api", "alpha-operator")
    assert "digest" not in event.after and clear not in str(event.after)
    logged = "\n".join(f"{r.getMessage()} {r.args} {r.__dict__}" for r in caplog.records)
    assert "api token issued" in logged and "login failed" in logged
    assert clear not in logged and secret not in logged


def test_the_default_lifetime_and_scope(fleet, anon, settings):
    settings.API_TOKEN_DEFAULT_DAYS = 30
    response = anon.post(LOGIN, {"username": "alpha-admin", "password": PASSWORD, "name": "x"})
    assert response.status_code == 201, response.content
    token = ApiToken.objects.get(pk=response.json()["id"])
    assert token.scope == "write"
    assert round((token.expires_at - token.created_at) / dt.timedelta(days=1)) == 30


@pytest.mark.parametrize(
    ("username", "password"),
    [("alpha-operator", "not-the-pw-9f3"), ("nobody", PASSWORD), ("ALPHA-OPERATOR", PASSWORD)],
)
def test_a_wrong_username_or_password_is_401_and_issues_nothing(fleet, anon, username, password):
    response = login(anon, username, password)
    body = assert_error_body(response, 401)
    assert body["code"] == "invalid_credentials"
    assert password not in response.content.decode()
    assert not ApiToken.objects.exists()
    assert not AuditEvent.objects.filter(object_type="tenants.apitoken").exists()


def test_an_inactive_person_and_a_person_without_a_role(fleet, anon):
    person = fleet.people["alpha_viewer"]
    person.is_active = False
    person.save()
    assert assert_error_body(login(anon, "alpha-viewer"), 401)["code"] == "invalid_credentials"
    get_user_model().objects.create_user("no-role", password=PASSWORD)
    assert assert_error_body(login(anon, "no-role"), 403)["code"] == "role"
    assert not ApiToken.objects.exists()


def test_bad_input_is_400_naming_the_field(fleet, anon):
    cases = [
        ({"days": 0}, "days"),
        ({"days": 367}, "days"),
        ({"scope": "admin"}, "scope"),
        ({"name": ""}, "name"),
        ({"password": ""}, "password"),
    ]
    for params, field in cases:
        body = assert_error_body(login(anon, **params), 400)
        assert [e["field"] for e in body["errors"]] == [field], (params, body)
    assert login(anon, days=366).status_code == 201


def test_failed_logins_lock_the_username_out_from_that_address(fleet, anon, address, settings):
    settings.LOGIN_MAX_FAILURES = 3
    settings.LOGIN_LOCKOUT_SECONDS = 600
    for _ in range(3):
        assert login(anon, password="guess").status_code == 401
    # Locked: even the right password is refused, with when to come back.
    locked = login(anon)
    body = assert_error_body(locked, 429)
    assert body["code"] == "login_locked_out" and "try again in 10 minutes" in body["message"]
    assert 590 <= int(locked["Retry-After"]) <= 600
    assert not ApiToken.objects.exists()
    # Only that username from that address: the person elsewhere, another person here, are fine.
    assert login(APIClient(REMOTE_ADDR="192.0.2.7")).status_code == 201
    assert login(anon, "alpha-admin").status_code == 201
    # The console's log-in form is refused alike (one backend counts every password check).
    console = Client(REMOTE_ADDR=address).post(
        "/console/login/", {"username": "alpha-operator", "password": PASSWORD}
    )
    assert console.status_code == 200 and "Too many failed log-ins" in console.content.decode()


def test_the_admin_login_says_a_username_is_locked_out(fleet, address, settings):
    """The admin's log-in page, like the console's, says why the right password is refused
    (not Django's "enter the correct username and password")."""
    settings.LOGIN_MAX_FAILURES = 2
    admin = Client(REMOTE_ADDR=address)
    form = {"username": "padmin", "password": "guess", "next": "/admin/"}
    for _ in range(2):
        page = admin.post("/admin/login/", form).content.decode()
        assert "Please enter the correct username and password" in page
        assert "Too many failed log-ins" not in page
    locked = admin.post("/admin/login/", {**form, "password": PASSWORD})
    assert locked.status_code == 200
    assert (
        "Too many failed log-ins for this username: try again in 15 minutes."
        in locked.content.decode()
    )
    assert "_auth_user_id" not in admin.session
    # The same words the API's 429 says; from another address the right password works.
    api = login(APIClient(REMOTE_ADDR=address), "padmin")
    assert assert_error_body(api, 429)["message"] in locked.content.decode()
    elsewhere = Client(REMOTE_ADDR="192.0.2.9").post(
        "/admin/login/", {**form, "password": PASSWORD}
    )
    assert elsewhere.status_code == 302 and elsewhere["Location"] == "/admin/"


def test_the_lockout_ends_with_its_window_and_a_success_starts_the_count_afresh(
    fleet, anon, settings, monkeypatch
):
    settings.LOGIN_MAX_FAILURES = 2
    assert login(anon, password="guess").status_code == 401
    assert login(anon).status_code == 201  # clears the count
    assert login(anon, password="guess").status_code == 401
    assert login(anon, password="guess").status_code == 401
    assert login(anon).status_code == 429
    later = logins.time.time() + settings.LOGIN_LOCKOUT_SECONDS + 1
    monkeypatch.setattr(logins.time, "time", lambda: later)
    assert login(anon).status_code == 201


def test_a_token_creates_no_token_wider_or_longer_lived_than_itself(fleet):
    person = fleet.people["alpha_operator"]
    parent, clear = issue_token(person, CTX, name="ci", scope="write", days=7)
    client = bearer(clear)
    too_long = client.post("/api/v1/tokens/", {"name": "child", "days": 30})
    body = assert_error_body(too_long, 403)
    assert body["code"] == "token_outlives_caller" and body["errors"][0]["field"] == "days"
    assert "at most 7 days" in body["message"]
    # As long as itself (rounded up to whole days) is allowed, and ends with it at the latest.
    for params in ({"days": 7}, {}):
        created = client.post("/api/v1/tokens/", {"name": "child", **params})
        assert created.status_code == 201, created.content
        assert created["Location"].endswith(f"/api/v1/tokens/{created.json()['id']}/")
        child = ApiToken.objects.get(pk=created.json()["id"])
        assert child.expires_at == parent.expires_at and child.scope == "write"
    # A read-scoped child of a write token is narrower: fine. A read token creates none at all
    # (refused by the service too, not only by the API's permission).
    created = client.post("/api/v1/tokens/", {"name": "reader", "scope": "read", "days": 1})
    assert created.status_code == 201
    reader = ApiToken.objects.get(pk=created.json()["id"])
    with pytest.raises(Denied) as refused:
        issue_token(person, CTX, name="x", scope="read", within=reader)
    assert refused.value.code == "token_read_only"
    denied = bearer(created.json()["token"]).post("/api/v1/tokens/", {"name": "x", "scope": "read"})
    assert assert_error_body(denied, 403)["code"] == "token_read_only"
    # A session is bounded only by the maximum.
    session = APIClient()
    session.force_login(person)
    assert session.post("/api/v1/tokens/", {"name": "long", "days": 366}).status_code == 201
    assert session.get("/api/v1/tokens/").json()["count"] == 5


def test_revoke_is_audited_once_and_the_token_stops_working(fleet, anon):
    clear = login(anon, name="laptop").json()["token"]
    token = ApiToken.objects.get(name="laptop")
    other = bearer(issue_token(token.user, CTX, name="other")[1])
    assert other.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    assert other.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204  # already: no change
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert bearer(clear).get("/api/v1/tokens/").status_code == 401
    events = AuditEvent.objects.filter(object_type="tenants.apitoken", object_id=str(token.pk))
    assert [(e.action, e.source) for e in events.order_by("id")] == [
        ("create", "api"),
        ("update", "api"),
    ]
    revoke = events.get(action="update")
    assert revoke.changed_fields == ["revoked_at"] and revoke.actor_username == "alpha-operator"
    listed = {t["id"]: t for t in other.get("/api/v1/tokens/").json()["results"]}
    assert listed[token.pk]["is_active"] is False and listed[token.pk]["revoked_at"]


def test_other_peoples_tokens_are_404(fleet, anon):
    theirs, _ = issue_token(fleet.people["beta_admin"], CTX, name="theirs")
    mine = login(anon).json()["token"]
    session = APIClient()
    session.force_login(fleet.people["alpha_operator"])
    for client in (bearer(mine), session, fleet.client("provider_admin")):
        assert client.get(f"/api/v1/tokens/{theirs.pk}/").status_code == 404
        assert client.delete(f"/api/v1/tokens/{theirs.pk}/").status_code == 404
        assert theirs.pk not in {t["id"] for t in client.get("/api/v1/tokens/").json()["results"]}
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_login_reads_no_other_credential(fleet, anon):
    """A revoked token or a session does not matter to the log-in: only the password does."""
    anon.credentials(HTTP_AUTHORIZATION="Bearer afc_revoked-or-made-up")
    assert login(anon).status_code == 201
    assert login(anon, password="wrong").status_code == 401


def test_a_cache_outage_does_not_lock_everybody_out(fleet, anon, monkeypatch):
    class Down:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise ConnectionError("cache down")

            return fail

    monkeypatch.setattr(logins, "cache", Down())
    assert login(anon, password="guess").status_code == 401
    assert login(anon).status_code == 201
