"""The console answers errors with its own HTML pages (never the API's JSON), and refusals
with a readable reason."""

from __future__ import annotations

import pytest

from provisioning.models import Workflow

pytestmark = pytest.mark.django_db


def as_(client, fleet, who):
    client.force_login(fleet.people[who])
    return client


def assert_console_page(response, status: int, *texts: str) -> str:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("text/html"), response["Content-Type"]
    page = response.content.decode()
    assert page.lstrip().startswith("<!doctype html>")
    assert 'class="error-page"' in page and "AI Factory console" in page  # the console's base
    for text in texts:
        assert text in page, (text, page)
    return page


def test_another_tenants_object_and_a_missing_one_are_the_same_html_404(client, fleet):
    as_(client, fleet, "alpha_admin")
    beta_site = fleet.sites["beta"]
    foreign = client.get(f"/console/sites/{beta_site.pk}/")
    missing = client.get("/console/sites/999999/")
    for response in (foreign, missing):
        page = assert_console_page(response, 404, "Not found", "not yours to see")
        assert beta_site.code not in page
    # A path the console does not have is its 404 too (after the trailing-slash redirect).
    assert_console_page(client.get("/console/no-such-page/"), 404, "Not found")
    # The API keeps its JSON.
    api = client.get("/api/v1/no-such-endpoint/")
    assert api.status_code == 404 and api["Content-Type"] == "application/json"


def test_a_role_refusal_is_an_html_403_saying_why(client, fleet):
    as_(client, fleet, "alpha_operator")
    assert_console_page(
        client.get("/console/workflows/new-upgrade/"),
        403,
        "Not allowed",
        "Only provider admins start rolling upgrades.",
    )


def test_a_refused_action_is_an_html_409_saying_why_and_changes_nothing(client, fleet):
    workflow = Workflow.objects.create(kind="deploy", state="succeeded", site=fleet.sites["alpha"])
    as_(client, fleet, "provider_admin")
    response = client.post(f"/console/workflows/{workflow.pk}/steer/pause/", {"reason": "x"})
    assert_console_page(
        response, 409, "Not possible right now", f"deploy workflow #{workflow.pk} is succeeded"
    )
    workflow.refresh_from_db()
    assert workflow.state == "succeeded"


def test_deciding_an_access_request_twice_is_an_html_409(client, fleet):
    import datetime as dt

    from django.utils import timezone

    from tenants.sovereignty.models import AccessRequest

    now = timezone.now()
    access = AccessRequest.objects.create(
        tenant=fleet.alpha,
        site=fleet.sites["alpha"],
        person=fleet.people["technician"],
        requested_by=fleet.people["provider_admin"],
        reason="swap a pump",
        starts_at=now,
        ends_at=now + dt.timedelta(hours=1),
    )
    as_(client, fleet, "alpha_admin")
    url = f"/console/sovereignty/access-requests/{access.pk}/approve/"
    assert client.post(url).status_code == 302
    assert_console_page(client.post(url), 409, f"access request #{access.pk} is already approved")


def test_an_unexpected_failure_is_the_console_500_page(client, fleet, monkeypatch):
    from provisioning.console import selectors

    def broken(actor):
        raise RuntimeError("boom")

    monkeypatch.setattr(selectors, "fleet", broken)
    as_(client, fleet, "provider_admin")
    client.raise_request_exception = False
    page = assert_console_page(client.get("/console/"), 500, "Server error")
    assert "boom" not in page and "Traceback" not in page
