"""Trust roots over the API: validated keys, the provider's own and each tenant's own, never
changed or deleted, revocable with history kept."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tenants.sovereignty.core import signing
from tests.support.signing import key_id_of, new_key, pem_of

pytestmark = pytest.mark.django_db
ROOTS = "/api/v1/sovereignty/trust-roots/"


def fields(response) -> set[tuple[str, str]]:
    return {(e["field"], e["code"]) for e in response.json()["errors"]}


def body(tenant, name="fw", key=None, **extra):
    key = key or new_key()
    return {"tenant": tenant, "name": name, "origin": "nvidia", "public_key": pem_of(key), **extra}


def test_a_tenant_admin_registers_its_own_root_from_pem_or_base64(fleet):
    admin = fleet.client("alpha_admin")
    key = new_key()
    created = admin.post(ROOTS, body(fleet.alpha.pk, key=key), format="json")
    assert created.status_code == 201, created.content
    root = created.json()
    assert root["ref"] == "tenant:fw" and root["key_id"] == key_id_of(key)
    assert root["public_key"] == signing.public_key_of(key)  # stored as raw base64
    assert root["revoked"] is False
    raw = admin.post(
        ROOTS,
        {**body(fleet.alpha.pk, name="raw"), "public_key": signing.public_key_of(key)},
        format="json",
    )
    assert raw.status_code == 201 and raw.json()["key_id"] == key_id_of(key)


@pytest.mark.parametrize(
    "public_key",
    [
        "not a key",
        base64.b64encode(b"x" * 31).decode(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    ],
    ids=["text", "short", "rsa", "bad-pem"],
)
def test_a_key_that_is_no_ed25519_public_key_is_a_400_naming_it(fleet, public_key):
    response = fleet.client("alpha_admin").post(
        ROOTS, {**body(fleet.alpha.pk), "public_key": public_key}, format="json"
    )
    assert response.status_code == 400, response.content
    assert fields(response) == {("public_key", "invalid_key")}


def test_the_provider_writes_only_its_own_roots_and_tenants_only_theirs(fleet):
    provider = fleet.client("provider_admin")
    assert provider.post(ROOTS, body(None, name="vendor"), format="json").status_code == 201
    # the customer's boundary is the customer's: the provider cannot add a root to it
    assert provider.post(ROOTS, body(fleet.alpha.pk), format="json").status_code == 403
    alpha = fleet.client("alpha_admin")
    assert alpha.post(ROOTS, body(None, name="mine"), format="json").status_code == 403
    other = alpha.post(ROOTS, body(fleet.beta.pk), format="json")
    assert other.status_code == 400 and {f for f, _ in fields(other)} == {"tenant"}
    operator = fleet.client("alpha_operator")
    assert operator.post(ROOTS, body(fleet.alpha.pk), format="json").status_code == 403


def test_tenants_see_the_providers_roots_and_their_own_only(fleet):
    provider_root = (
        fleet.client("provider_admin").post(ROOTS, body(None, name="vendor"), format="json").json()
    )
    alpha_root = fleet.client("alpha_admin").post(ROOTS, body(fleet.alpha.pk), format="json").json()
    beta = fleet.client("beta_admin")
    seen = {r["id"] for r in beta.get(ROOTS).json()["results"]}
    assert provider_root["id"] in seen and alpha_root["id"] not in seen
    assert beta.get(f"{ROOTS}{alpha_root['id']}/").status_code == 404
    assert beta.post(f"{ROOTS}{alpha_root['id']}/revoke/", {}).status_code == 404


def test_a_root_is_revoked_once_and_never_changed_or_deleted(fleet):
    admin = fleet.client("alpha_admin")
    root = admin.post(ROOTS, body(fleet.alpha.pk), format="json").json()
    url = f"{ROOTS}{root['id']}/"
    assert admin.patch(url, {"name": "x"}, format="json").status_code == 405
    assert admin.delete(url).status_code == 405
    assert fleet.client("provider_admin").post(f"{url}revoke/", {}).status_code == 403
    revoked = admin.post(f"{url}revoke/", {"reason": "rotated"}, format="json")
    assert revoked.status_code == 200, revoked.content
    assert revoked.json()["revoked"] is True and revoked.json()["revoked_reason"] == "rotated"
    again = admin.post(f"{url}revoke/", {}, format="json")
    assert again.status_code == 409
    assert admin.get(url).json()["revoked_by"] == "alpha-admin"


def test_the_admin_registers_provider_roots_and_revokes_them(fleet, client):
    from tenants.models import AuditEvent
    from tenants.sovereignty.models import TrustRoot

    padmin = fleet.people["provider_admin"]
    padmin.is_superuser = True
    padmin.save()
    client.force_login(padmin)
    add = "/admin/sovereignty/trustroot/add/"
    bad = client.post(add, {"name": "vendor", "origin": "nvidia", "public_key": "nope"})
    assert bad.status_code == 200 and not TrustRoot.objects.exists()  # the form shows why
    key = new_key()
    response = client.post(add, {"name": "vendor", "origin": "nvidia", "public_key": pem_of(key)})
    assert response.status_code == 302, response.content.decode()[-2000:]
    root = TrustRoot.objects.get()
    assert root.tenant_id is None and root.key_id == key_id_of(key)
    assert AuditEvent.objects.filter(object_type="sovereignty.trustroot", action="create").exists()
    changelist = "/admin/sovereignty/trustroot/"
    done = client.post(changelist, {"action": "revoke", "_selected_action": [root.pk]})
    assert done.status_code == 302
    root.refresh_from_db()
    assert root.revoked and root.revoked_by == "padmin"
