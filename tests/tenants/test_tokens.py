import datetime as dt
import hashlib
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.models import ApiToken, AuditEvent
from tests.support.fleet import client_for


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_issue_token_command_prints_a_working_token_stored_only_as_digest(fleet):
    out = StringIO()
    call_command("issue_token", "alpha-viewer", "--name", "ci", stdout=out)
    clear = out.getvalue().strip()
    assert clear.startswith("afc_") and len(clear) > 40
    stored = ApiToken.objects.get(name="ci")
    assert stored.digest == hashlib.sha256(clear.encode()).hexdigest()
    assert clear not in {stored.digest, stored.prefix, stored.name}
    assert stored.prefix == clear[:12]
    assert bearer(clear).get("/api/v1/sites/").status_code == 200
    stored.refresh_from_db()
    assert stored.last_used_at is not None
    # The clear token appears in no audit record either.
    assert not any(
        clear in str(e.after) for e in AuditEvent.objects.filter(object_type="tenants.apitoken")
    )


def test_issue_token_command_errors(fleet):
    with pytest.raises(CommandError, match="no user named"):
        call_command("issue_token", "nobody")
    with pytest.raises(CommandError, match="days must be between"):
        call_command("issue_token", "alpha-viewer", "--days", "0")


def test_expired_and_revoked_tokens_are_401(fleet):
    out = StringIO()
    call_command("issue_token", "alpha-admin", stdout=out)
    clear = out.getvalue().strip()
    token = ApiToken.objects.get(prefix=clear[:12])
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert bearer(clear).get("/api/v1/sites/").json()["code"] == "invalid_token"
    ApiToken.objects.filter(pk=token.pk).update(
        expires_at=timezone.now() + dt.timedelta(days=1), revoked_at=timezone.now()
    )
    assert bearer(clear).get("/api/v1/sites/").status_code == 401


def test_malformed_authorization_header_is_401(fleet):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer two words")
    assert client.get("/api/v1/sites/").json()["code"] == "malformed_credentials"


def test_token_api_create_shows_once_list_hides_and_delete_revokes(fleet):
    client = fleet.client("alpha_operator")
    created = client.post("/api/v1/tokens/", {"name": "pipeline", "scope": "read", "days": 7})
    assert created.status_code == 201, created.content
    clear = created.json()["token"]
    listed = client.get("/api/v1/tokens/").json()["results"]
    assert {t["name"] for t in listed} == {"test", "pipeline"}
    assert all("token" not in t and "digest" not in t for t in listed)
    # Read-scoped tokens read but never write.
    read_only = bearer(clear)
    assert read_only.get("/api/v1/racks/").status_code == 200
    denied = read_only.patch(f"/api/v1/racks/{fleet.racks['alpha'].pk}/", {"status": "planned"})
    assert denied.status_code == 403 and denied.json()["code"] == "token_read_only"
    # Someone else's token is not there.
    other = fleet.client("beta_admin")
    assert other.delete(f"/api/v1/tokens/{created.json()['id']}/").status_code == 404
    assert client.delete(f"/api/v1/tokens/{created.json()['id']}/").status_code == 204
    assert ApiToken.objects.get(pk=created.json()["id"]).revoked_at is not None
    assert read_only.get("/api/v1/racks/").status_code == 401


def test_token_api_rejects_bad_lifetimes(fleet):
    response = fleet.client("alpha_admin").post("/api/v1/tokens/", {"name": "x", "days": 9999})
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "days"


def test_person_without_any_role_is_403(db):
    from django.contrib.auth import get_user_model

    nobody = get_user_model().objects.create_user("nobody")
    response = client_for(nobody).get("/api/v1/sites/")
    assert response.status_code == 403


def test_tokens_have_object_responses_like_every_other_object(fleet):
    client = fleet.client("alpha_operator")
    created = client.post("/api/v1/tokens/", {"name": "pipeline", "scope": "read", "days": 7})
    assert created.status_code == 201, created.content
    url = created["Location"]
    shown = client.get(url)
    etag = shown["ETag"]
    assert etag.startswith('"') and created["ETag"] == etag  # the token as GET shows it
    assert "token" not in shown.json()
    not_modified = client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert not_modified.status_code == 304 and not_modified.content == b""
    brief = client.get(url + "?brief=true").json()
    assert set(brief) == {"id", "url", "display", "name", "prefix", "is_active"}
    assert brief["url"] == url
    rows = client.get("/api/v1/tokens/?fields=id,name").json()["results"]
    assert rows and all(list(row) == ["id", "name"] for row in rows)
    assert client.delete(url).status_code == 204
    revoked = client.get(url, HTTP_IF_NONE_MATCH=etag)  # revoking is a new version
    assert revoked.status_code == 200 and revoked["ETag"] != etag


def test_token_events_carry_their_owners_tenant(fleet):
    """A tenant's people read their tenant's audit log: their tokens' issue and revoke are in
    it. A provider person's, or a person's of several tenants, are in the provider's only."""
    from tenants.models import Membership
    from tenants.services.changes import save_object
    from tenants.services.tokens import issue_token, revoke_token
    from tests.support.fleet import CTX

    def events(token):
        found = AuditEvent.objects.filter(object_type="tenants.apitoken", object_id=str(token.pk))
        return [(e.action, e.tenant_id) for e in found.order_by("id")]

    operator = fleet.people["alpha_operator"]
    token, _ = issue_token(operator, CTX, name="pipeline")
    revoke_token(token, CTX)
    assert events(token) == [("create", fleet.alpha.pk), ("update", fleet.alpha.pk)]
    seen = fleet.client("alpha_admin").get(
        f"/api/v1/audit-events/?object_type=tenants.apitoken&object_id={token.pk}"
    )
    assert sorted(e["action"] for e in seen.json()["results"]) == ["create", "update"]
    assert (
        fleet.client("beta_admin")
        .get(f"/api/v1/audit-events/?object_type=tenants.apitoken&object_id={token.pk}")
        .json()["results"]
        == []
    )

    provider, _ = issue_token(fleet.people["provider_admin"], CTX, name="ops")
    assert events(provider) == [("create", None)]
    both = fleet.people["beta_viewer"]
    save_object(Membership(user=both, tenant=fleet.alpha, role="tenant-viewer"), CTX)
    shared, _ = issue_token(both, CTX, name="shared")
    assert events(shared) == [("create", None)]
