"""The console's API tokens page: each person lists, creates (the clear token shown once) and
revokes their own tokens, and nobody else's."""

from __future__ import annotations

import datetime as dt
import re
import secrets

import pytest
from django.contrib.auth import get_user_model

from tenants.models import ApiToken, AuditEvent
from tenants.services.tokens import digest, issue_token
from tests.support.fleet import CTX

pytestmark = pytest.mark.django_db
PAGE = "/console/tokens/"


def as_(client, fleet, who):
    client.force_login(fleet.people[who])
    return client


def html_error(response, status: int, *texts: str) -> str:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert 'class="error-page"' in page
    for text in texts:
        assert text in page, (text, page)
    return page


def test_the_header_links_to_the_page_and_it_lists_only_ones_own_tokens(client, fleet):
    mine, _ = issue_token(fleet.people["alpha_viewer"], CTX, name="my-pipeline", scope="read")
    issue_token(fleet.people["beta_admin"], CTX, name="their-pipeline")
    as_(client, fleet, "alpha_viewer")  # a viewer too: tokens are everyone's own business
    assert f'href="{PAGE}"' in client.get("/console/").content.decode()
    response = client.get(PAGE)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'aria-current="page">API tokens' in page
    assert "my-pipeline" in page and f"{mine.prefix}…" in page and "their-pipeline" not in page
    assert "never" in page and 'class="state active"' in page  # last used, status in words
    assert mine.digest not in page


def test_creating_shows_the_token_once_and_audits_it(client, fleet):
    as_(client, fleet, "alpha_operator")
    response = client.post(PAGE, {"name": "laptop", "scope": "write", "days": "30"})
    assert response.status_code == 200, response.content[:500]
    assert response["Cache-Control"] == "no-store"
    page = response.content.decode()
    clear = re.search(r'id="new-token" class="secret" value="(afc_[^"]+)"', page)[1]
    assert page.count(clear) == 1 and "shown only this once" in page
    assert 'data-copy="new-token"' in page and "Copy token" in page
    token = ApiToken.objects.get(digest=digest(clear))
    assert (token.user, token.name, token.scope) == (
        fleet.people["alpha_operator"],
        "laptop",
        "write",
    )
    assert round((token.expires_at - token.created_at) / dt.timedelta(days=1)) == 30
    event = AuditEvent.objects.get(object_type="tenants.apitoken", object_id=str(token.pk))
    assert (event.action, event.source, event.actor_username) == (
        "create",
        "console",
        "alpha-operator",
    )
    # Never again: the list shows its prefix only.
    again = client.get(PAGE).content.decode()
    assert clear not in again and 'id="new-token"' not in again and f"{token.prefix}…" in again


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"days": "0"}, "days", "greater than or equal to 1"),
        ({"days": "-3"}, "days", "greater than or equal to 1"),
        ({"days": "367"}, "days", "less than or equal to 366"),
        ({"days": "99999999999999999999"}, "days", "less than or equal to 366"),
        ({"days": "ten"}, "days", "Enter a whole number."),
        ({"days": "1.5"}, "days", "Enter a whole number."),
        ({"days": ""}, "days", "This field is required."),
        ({"scope": "root"}, "scope", "Select a valid choice"),
        ({"name": ""}, "name", "This field is required."),
        (
            {"name": "n" * 101},
            "name",
            "Ensure this value has at most 100 characters (it has 101).",
        ),
    ],
)
def test_bad_input_is_shown_on_the_form_and_creates_nothing(client, fleet, data, field, message):
    as_(client, fleet, "alpha_admin")
    before = AuditEvent.objects.count()
    response = client.post(PAGE, {"name": "x", "scope": "write", "days": "7", **data})
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == [field] and any(message in m for m in errors[field]), errors
    page = response.content.decode()
    assert message in page and 'class="error"' in page and 'id="new-token"' not in page
    assert not ApiToken.objects.filter(user=fleet.people["alpha_admin"]).exists()
    assert AuditEvent.objects.count() == before


def test_revoking_asks_first_then_revokes_and_audits(client, fleet):
    token, _ = issue_token(fleet.people["alpha_operator"], CTX, name="old-ci")
    as_(client, fleet, "alpha_operator")
    assert f'href="/console/tokens/{token.pk}/revoke/"' in client.get(PAGE).content.decode()
    confirm = client.get(f"/console/tokens/{token.pk}/revoke/")
    assert confirm.status_code == 200
    assert "Revoke token “old-ci”?" in confirm.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is None  # asking changes nothing
    done = client.post(f"/console/tokens/{token.pk}/revoke/")
    assert done.status_code == 302 and done["Location"] == PAGE
    token.refresh_from_db()
    assert token.revoked_at is not None
    page = client.get(PAGE).content.decode()
    assert "revoked" in page and 'class="state revoked"' in page
    assert f'href="/console/tokens/{token.pk}/revoke/"' not in page
    event = AuditEvent.objects.filter(object_id=str(token.pk), action="update").get()
    assert event.source == "console" and event.changed_fields == ["revoked_at"]
    # Revoking again changes nothing.
    client.post(f"/console/tokens/{token.pk}/revoke/")
    assert AuditEvent.objects.filter(object_id=str(token.pk), action="update").count() == 1


def test_another_persons_token_is_an_html_404_and_stays_active(client, fleet):
    theirs, _ = issue_token(fleet.people["alpha_admin"], CTX, name="admins-token")
    as_(client, fleet, "provider_admin")  # not even a provider admin
    for response in (
        client.get(f"/console/tokens/{theirs.pk}/revoke/"),
        client.post(f"/console/tokens/{theirs.pk}/revoke/"),
        client.get("/console/tokens/999999/revoke/"),
    ):
        assert "admins-token" not in html_error(response, 404, "Not found")
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_a_person_without_a_role_is_an_html_403_and_anonymous_people_log_in(client, db):
    assert client.get(PAGE)["Location"].startswith("/console/login/")
    client.force_login(get_user_model().objects.create_user("no-role"))
    html_error(client.get(PAGE), 403, "Not allowed")
    html_error(client.post(PAGE, {"name": "x", "scope": "read", "days": "7"}), 403)
    assert not ApiToken.objects.exists()


def test_the_console_login_is_locked_out_after_failures(client, fleet, settings):
    settings.LOGIN_MAX_FAILURES = 2
    address, elsewhere = (f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}" for _ in "ab")
    form = {"username": "beta-viewer", "password": "wrong"}
    for _ in range(2):
        page = client.post("/console/login/", form, REMOTE_ADDR=address).content.decode()
        assert "Your username and password did not match." in page
    locked = client.post(
        "/console/login/", {**form, "password": "pw"}, REMOTE_ADDR=address
    ).content.decode()
    assert "Too many failed log-ins for this username: try again in 15 minutes." in locked
    # From another address the right password works.
    other = client.post("/console/login/", {**form, "password": "pw"}, REMOTE_ADDR=elsewhere)
    assert other.status_code == 302
