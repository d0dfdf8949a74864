"""Customer key custody: external key stores the tenant holds, disconnected and reconnected by
the customer alone, through the real API on PostgreSQL."""

import pytest

from tenants.events.models import Event
from tenants.models import AuditEvent
from tenants.sovereignty.models import DecisionRecord, ExternalKeyStore, ProtectedAsset
from tests.support.api import assert_error_body
from tests.support.sovereignty import active_rule

STORES = "/api/v1/sovereignty/key-stores/"
ASSETS = "/api/v1/sovereignty/assets/"


@pytest.fixture
def store(fleet):
    admin = fleet.client("alpha_admin")
    created = admin.post(
        STORES,
        {
            "tenant": fleet.alpha.pk,
            "name": "xks-fra",
            "endpoint_url": "https://xks.alpha.example/kms/xks/v1",
            "country": "DE",
            "sites": [fleet.sites["alpha"].pk],
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["state"] == "connected" and body["sites"] == [fleet.sites["alpha"].pk]
    return body


def _asset(client, fleet, name, kind="dataset"):
    return client.post(
        ASSETS,
        {
            "tenant": fleet.alpha.pk,
            "name": name,
            "kind": kind,
            "classification": "confidential",
            "site": fleet.sites["alpha"].pk,
        },
        format="json",
    )


def test_disconnect_makes_assets_unavailable_and_denies_placements_until_reconnected(fleet, store):
    sites_logged = AuditEvent.objects.filter(
        object_type="sovereignty.externalkeystore", after__sites__isnull=False
    ).get()
    assert sites_logged.after == {"sites": [fleet.sites["alpha"].pk]}
    assert sites_logged.tenant_id == fleet.alpha.pk
    rule = active_rule(fleet, "key_custody", stores=["xks-fra"])
    assert rule["sentence"].startswith("Keys only in the customer-held key stores xks-fra")
    admin, operator = fleet.client("alpha_admin"), fleet.client("alpha_operator")
    key = _asset(operator, fleet, "patients-key", kind="key")
    data = _asset(operator, fleet, "patients")
    assert key.status_code == 201 and data.status_code == 201, (key.content, data.content)
    assert data.json()["availability"] == "available" and data.json()["unavailable_reason"] == ""

    down = admin.post(f"{STORES}{store['id']}/disconnect/")
    assert down.status_code == 200, down.content
    assert down.json()["state"] == "disconnected"
    assert down.json()["state_changed_by"] == "alpha-admin"
    listed = {a["name"]: a for a in operator.get(ASSETS).json()["results"]}
    for name in ("patients", "patients-key"):
        assert listed[name]["availability"] == "unavailable"
        assert "xks-fra" in listed[name]["unavailable_reason"]

    before = ProtectedAsset.objects.count()
    refused = _asset(operator, fleet, "scans")
    assert_error_body(refused, 403)
    assert refused.json()["code"] == "sovereignty_denied"
    assert refused.json()["errors"][0]["message"].startswith(f"{rule['cedar_id']}: key_custody:")
    assert ProtectedAsset.objects.count() == before
    denial = DecisionRecord.objects.filter(allowed=False).latest("id")
    assert denial.rule_ids == [rule["cedar_id"]] and denial.tenant_id == fleet.alpha.pk

    # The customer's own event, and the change in its audit log.
    event = Event.objects.filter(kind="key_store.disconnected").get()
    assert event.tenant_id == fleet.alpha.pk
    assert event.data["assets"] == ["patients", "patients-key"]
    audit = AuditEvent.objects.filter(
        object_type="sovereignty.externalkeystore", object_id=str(store["id"]), action="update"
    ).latest("id")
    assert audit.tenant_id == fleet.alpha.pk
    assert audit.before["state"] == "connected" and audit.after["state"] == "disconnected"

    again = admin.post(f"{STORES}{store['id']}/disconnect/")
    assert_error_body(again, 409)

    up = admin.post(f"{STORES}{store['id']}/connect/")
    assert up.status_code == 200 and up.json()["state"] == "connected"
    assert Event.objects.filter(kind="key_store.connected", tenant=fleet.alpha).count() == 1
    assert operator.get(f"{ASSETS}{data.json()['id']}/").json()["availability"] == "available"
    assert _asset(operator, fleet, "scans").status_code == 201


def test_a_rule_naming_stores_keeps_keys_in_them(fleet, store):
    """Keys go only where a named, connected store serves the site; other assets are free."""
    other = fleet.client("alpha_admin").post(
        STORES,
        {
            "tenant": fleet.alpha.pk,
            "name": "xks-other",
            "endpoint_url": "https://xks-other.alpha.example/kms/xks/v1",
            "country": "DE",
            "sites": [],
        },
        format="json",
    )
    assert other.status_code == 201, other.content  # a known store, serving no site of ours
    active_rule(fleet, "key_custody", stores=["xks-other"])
    operator = fleet.client("alpha_operator")
    assert _asset(operator, fleet, "k1", kind="key").status_code == 403
    assert _asset(operator, fleet, "d1").status_code == 201


def test_only_the_tenant_admin_connects_or_disconnects(fleet, store):
    url = f"{STORES}{store['id']}/disconnect/"
    provider = fleet.client("provider_admin")
    assert provider.get(f"{STORES}{store['id']}/").status_code == 200  # it may see why
    assert_error_body(provider.post(url), 403)
    assert_error_body(fleet.client("alpha_operator").post(url), 403)
    assert_error_body(fleet.client("beta_admin").post(url), 404)
    assert fleet.client("beta_admin").get(STORES).json()["count"] == 0
    assert_error_body(
        provider.patch(f"{STORES}{store['id']}/", {"name": "other"}, format="json"), 403
    )
    assert ExternalKeyStore.objects.get(pk=store["id"]).state == "connected"
    assert not Event.objects.filter(kind__startswith="key_store.").exists()


def test_a_store_serves_only_its_tenants_sites_over_https(fleet):
    admin = fleet.client("alpha_admin")
    base = {"tenant": fleet.alpha.pk, "name": "xks", "country": "DE"}
    foreign = admin.post(
        STORES,
        {**base, "endpoint_url": "https://x.example", "sites": [fleet.sites["beta"].pk]},
        format="json",
    )
    assert_error_body(foreign, 400)
    assert foreign.json()["errors"][0]["field"] == "sites"
    plain = admin.post(STORES, {**base, "endpoint_url": "http://x.example"}, format="json")
    assert_error_body(plain, 400)
    assert plain.json()["errors"][0]["field"] == "endpoint_url"
    assert not ExternalKeyStore.objects.exists()
