"""The admin turns a refused change into form errors or a message: never a 500, nothing written."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import DELETION, LogEntry

from factory.inventory.models import PowerFeed, Rack, UltraServer
from tenants.models import AuditEvent
from tests.support.admin import admin_form_data
from tests.support.fleet import make_rack


@pytest.fixture
def admin_client(fleet, client):
    admin = fleet.people["provider_admin"]
    admin.is_superuser = True
    admin.save()
    client.force_login(admin)
    return client


def test_an_illegal_lifecycle_change_is_a_form_error(fleet, admin_client):
    server = fleet.servers["alpha"]
    url = f"/admin/inventory/ultraserver/{server.pk}/change/"
    data = admin_form_data(admin_client.get(url))
    assert data["lifecycle_state"] == "planned"
    events = AuditEvent.objects.count()

    response = admin_client.post(url, {**data, "lifecycle_state": "in-service"})

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "'planned' → 'in-service' is not allowed" in " ".join(form.errors["lifecycle_state"])
    assert "is not allowed" in response.content.decode()
    server.refresh_from_db()
    assert server.lifecycle_state == "planned"
    assert AuditEvent.objects.count() == events
    # The same form with a legal change goes through.
    ok = admin_client.post(url, {**data, "lifecycle_state": "installing"})
    assert ok.status_code == 302
    server.refresh_from_db()
    assert server.lifecycle_state == "installing"


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_a_rack_that_holds_servers_is_not_deleted(fleet, admin_client):
    rack = fleet.racks["alpha"]
    url = f"/admin/inventory/rack/{rack.pk}/delete/"
    # Django's own check first: the confirmation page names what protects it.
    page = admin_client.post(url, {"post": "yes"})
    assert page.status_code == 200
    assert "protected" in page.content.decode()
    assert Rack.objects.filter(pk=rack.pk).exists()


def test_a_delete_refused_at_the_last_moment_is_a_message(fleet, admin_client, monkeypatch):
    """The servers arrive between Django's check and the locked delete: ProtectedError from
    the change service becomes a message on the change page, and nothing is deleted."""
    from django.contrib import admin

    rack = fleet.racks["alpha"]
    rack_admin = admin.site._registry[Rack]
    monkeypatch.setattr(
        rack_admin, "get_deleted_objects", lambda objs, request: ([], {}, set(), [])
    )
    events = AuditEvent.objects.count()
    response = admin_client.post(
        f"/admin/inventory/rack/{rack.pk}/delete/", {"post": "yes"}, follow=True
    )
    assert response.redirect_chain[-1] == (f"/admin/inventory/rack/{rack.pk}/change/", 302)
    assert response.status_code == 200
    [message] = _messages(response)
    assert message.startswith("Not deleted: still in use by: ")
    assert Rack.objects.filter(pk=rack.pk).exists()
    assert AuditEvent.objects.count() == events


def test_removing_a_loaded_racks_last_feed_is_refused_one_or_many(fleet, admin_client):
    rack = fleet.racks["alpha"]
    feed_a, feed_b = PowerFeed.objects.filter(rack=rack).order_by("path")
    one = admin_client.post(
        f"/admin/inventory/powerfeed/{feed_a.pk}/delete/", {"post": "yes"}, follow=True
    )
    assert one.status_code == 200
    assert any("Not deleted: rack: " in m for m in _messages(one)), _messages(one)
    many = admin_client.post(
        "/admin/inventory/powerfeed/",
        {"action": "delete_selected", "_selected_action": [feed_a.pk, feed_b.pk], "post": "yes"},
        follow=True,
    )
    assert many.status_code == 200
    assert any(m.startswith("Not deleted: ") for m in _messages(many)), _messages(many)
    assert PowerFeed.objects.filter(rack=rack).count() == 2
    assert UltraServer.objects.filter(rack=rack).count() == 1
    # the admin's own history does not claim a deletion that was refused
    assert not LogEntry.objects.filter(action_flag=DELETION).exists()


def test_an_admin_deletion_that_happens_is_in_the_admins_history(fleet, admin_client):
    rack = make_rack(fleet.sites["alpha"], "ALPHA-R99")  # holds no server: its feeds may go
    feeds = list(PowerFeed.objects.filter(rack=rack))
    response = admin_client.post(
        "/admin/inventory/powerfeed/",
        {"action": "delete_selected", "_selected_action": [f.pk for f in feeds], "post": "yes"},
        follow=True,
    )
    assert response.status_code == 200
    assert not PowerFeed.objects.filter(rack=rack).exists(), _messages(response)
    logged = LogEntry.objects.filter(action_flag=DELETION)
    assert sorted(logged.values_list("object_id", flat=True)) == sorted(str(f.pk) for f in feeds)
