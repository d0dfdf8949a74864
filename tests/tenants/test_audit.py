import psycopg
import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from tenants.models import AuditEvent
from tenants.models.audit import AppendOnlyError


def test_orm_refuses_update_and_delete(fleet):
    event = AuditEvent.objects.first()
    event.object_repr = "rewritten"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(object_repr="rewritten")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE tenants_auditevent SET object_repr = 'rewritten'",
        "DELETE FROM tenants_auditevent",
    ],
)
def test_database_trigger_refuses_raw_sql(fleet, statement):
    count = AuditEvent.objects.count()
    assert count > 0
    with (
        pytest.raises(DatabaseError) as refused,
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)
    assert "append-only" in str(refused.value)
    assert isinstance(refused.value.__cause__, psycopg.errors.InsufficientPrivilege)
    assert AuditEvent.objects.count() == count
    assert not AuditEvent.objects.filter(object_repr="rewritten").exists()


def test_api_offers_no_way_to_change_the_log(fleet):
    client = fleet.client("provider_admin")
    event = AuditEvent.objects.first()
    for method in ("put", "patch", "delete"):
        assert getattr(client, method)(f"/api/v1/audit-events/{event.pk}/", {}).status_code == 405
    assert client.post("/api/v1/audit-events/", {}).status_code == 405


def test_tenants_read_only_events_about_their_own_objects(fleet):
    client = fleet.client("alpha_viewer")
    events = client.get("/api/v1/audit-events/?limit=1000").json()["results"]
    assert events and {e["tenant_id"] for e in events} == {fleet.alpha.pk}
    rack_events = client.get(
        f"/api/v1/audit-events/?object_type=inventory.rack&object_id={fleet.racks['alpha'].pk}"
    ).json()["results"]
    assert [e["action"] for e in rack_events] == ["create"]
    # Technicians act on sites; they do not read customers' audit trails.
    assert fleet.client("technician").get("/api/v1/audit-events/").status_code == 403


def test_admin_changes_are_validated_and_audited(fleet, client):
    admin = fleet.people["provider_admin"]
    admin.is_superuser = True
    admin.save()
    client.force_login(admin)
    site = fleet.sites["alpha"]
    url = f"/admin/inventory/site/{site.pk}/change/"
    form = {
        "tenant": site.tenant_id,
        "code": site.code,
        "name": site.name,
        "country": "DE",
        "city": "",
        "time_zone": "Europe/Berlin",
        "contracted_power_kw": "2500",
        "contracted_cooling_kw": "2000",
        "status": "active",
    }
    response = client.post(url, form, HTTP_X_REQUEST_ID="admin-req-1")
    assert response.status_code == 302, response.content[:3000]
    event = AuditEvent.objects.get(object_type="inventory.site", action="update")
    assert event.source == "admin" and event.request_id == "admin-req-1"
    assert event.actor_username == "padmin"
    assert (event.before["contracted_power_kw"], event.after["contracted_power_kw"]) == (
        "2000.0",
        "2500.0",
    )
    # The same rule as the API: a contract below the committed 187.8 kW is refused on the form.
    refused = client.post(url, {**form, "contracted_power_kw": "100"})
    assert refused.status_code == 200
    assert "below the committed 187.8 kW" in refused.content.decode()
    assert AuditEvent.objects.filter(object_type="inventory.site", action="update").count() == 1


def test_admin_pages_render(fleet, client):
    admin = fleet.people["provider_admin"]
    admin.is_superuser = True
    admin.save()
    client.force_login(admin)
    server = fleet.servers["alpha"]
    for url in [
        "/admin/",
        "/admin/inventory/ultraserver/",
        f"/admin/inventory/ultraserver/{server.pk}/change/",
        "/admin/inventory/site/",
        "/admin/inventory/rack/",
        "/admin/inventory/powerfeed/",
        "/admin/inventory/chip/",
        "/admin/tenants/auditevent/",
        "/admin/tenants/tenant/",
        "/admin/tenants/user/",
        "/admin/tenants/apitoken/",
        "/admin/catalog/ultraservermodel/",
        "/admin/sovereignty/sovereigntyrule/",
        "/admin/sovereignty/decisionrecord/",
        "/admin/sovereignty/protectedasset/",
        "/admin/sovereignty/accessrequest/",
        "/admin/sovereignty/jurisdictiongroup/",
        "/admin/sovereignty/transferbasis/",
        f"/admin/tenants/auditevent/{AuditEvent.objects.first().pk}/change/",
    ]:
        assert client.get(url).status_code == 200, url
    page = client.get(f"/admin/inventory/ultraserver/{server.pk}/change/").content.decode()
    assert page.count("ALP1-SRV1-C") == 0 and "chips</a>" in page  # a summary, not 144 rows
