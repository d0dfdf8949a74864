"""Domain errors become HTTP answers in one place: the API's exception handler (and, for plain
Django views, the middleware and handlers next to it). One real endpoint per status."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from django.utils import timezone

from factory.core.errors import DomainErrorMiddleware, api_exception_handler
from tenants.errors import Conflict, Denied, FieldError, Invalid, NotFound, PreconditionFailed
from tests.support.api import assert_error_body
from tests.support.sovereignty import RULES, active_rule
from tests.support.telemetry import agent_client


@pytest.mark.parametrize(
    "error",
    [
        Invalid("bad input", code="bad", field="name"),
        Denied("not yours", code="role"),
        NotFound(),
        Conflict("rack in use", code="rack_in_use", field="rack"),
        PreconditionFailed("changed since you read it", code="stale", field="version"),
        Invalid(errors=[FieldError("a", "x", "first"), FieldError(None, "y", "second")]),
    ],
)
def test_the_handler_answers_each_class_with_its_status_and_body(error):
    response = api_exception_handler(error, {})
    assert response.status_code == error.status
    assert response.data == error.as_dict()
    assert set(response.data) == {"status", "code", "message", "errors"}
    for reason in response.data["errors"]:
        assert set(reason) == {"field", "code", "message"}


def test_the_handler_leaves_bugs_alone():
    assert api_exception_handler(RuntimeError("a bug"), {}) is None  # DRF re-raises: a 500


def test_400_a_rule_that_is_no_longer_a_draft(fleet):
    rule = active_rule(fleet, "residency", allowed=["DE"])
    response = fleet.client("alpha_admin").post(f"{RULES}{rule['id']}/activate/")
    body = assert_error_body(response, 400)
    assert body["code"] == "not_a_draft"
    assert body["errors"] == [
        {"field": "status", "code": "not_a_draft", "message": "rule is active, not a draft"}
    ]


def test_403_an_event_about_another_sites_server(fleet):
    client, _ = agent_client(fleet.sites["alpha"])
    response = client.post(
        "/api/v1/agent/events/",
        {
            "events": [
                {
                    "source": fleet.servers["beta"].serial,
                    "kind": "chip-failure",
                    "chip": 1,
                    "timestamp": "2026-11-28T10:00Z",
                }
            ]
        },
        format="json",
    )
    assert assert_error_body(response, 403)["code"] == "other_site"


def test_404_another_tenants_object_is_missing(fleet):
    response = fleet.client("alpha_admin").get(f"/api/v1/racks/{fleet.racks['beta'].pk}/")
    body = assert_error_body(response, 404)
    assert body["code"] == "not_found" and body["message"] == "Not found."


def test_409_a_lifecycle_change_off_the_whitelist(fleet):
    server = fleet.servers["alpha"]
    response = fleet.client("provider_admin").patch(
        f"/api/v1/ultraservers/{server.pk}/", {"lifecycle_state": "upgrading"}
    )
    body = assert_error_body(response, 409)
    assert body["code"] == "invalid_transition"
    assert body["errors"][0]["field"] == "lifecycle_state"
    server.refresh_from_db()
    assert server.lifecycle_state == "planned"


def test_409_an_access_request_decided_twice(fleet):
    now = timezone.now()
    created = fleet.client("provider_admin").post(
        "/api/v1/sovereignty/access-requests/",
        {
            "site": fleet.sites["alpha"].pk,
            "person": fleet.people["technician"].pk,
            "reason": "replace CDU pump",
            "starts_at": (now - dt.timedelta(minutes=5)).isoformat(),
            "ends_at": (now + dt.timedelta(hours=4)).isoformat(),
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    url = f"/api/v1/sovereignty/access-requests/{created.json()['id']}/"
    admin = fleet.client("alpha_admin")
    assert admin.post(url + "approve/").status_code == 200
    body = assert_error_body(admin.post(url + "reject/"), 409)
    assert body["errors"][0]["code"] == "already_decided"
    assert admin.get(url).json()["status"] == "approved"


def test_a_plain_django_view_answers_json_outside_the_console_and_html_inside(rf: RequestFactory):
    middleware = DomainErrorMiddleware(lambda request: None)
    error = Conflict("window already approved", code="already_decided", field="status")
    api = rf.post("/healthz")
    api.user = AnonymousUser()
    response = middleware.process_exception(api, error)
    assert response.status_code == 409 and response["Content-Type"] == "application/json"
    console = rf.post("/console/sovereignty/")
    console.user = AnonymousUser()
    page = middleware.process_exception(console, error)
    assert page.status_code == 409 and page["Content-Type"].startswith("text/html")
    assert "window already approved" in page.content.decode()
    # Anything that is not a refusal is left to Django (a 500, logged).
    assert middleware.process_exception(api, RuntimeError("a bug")) is None
