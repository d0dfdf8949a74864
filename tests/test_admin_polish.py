"""The admin reads as a person would write it (issue 17): labels, read-only system fields, no
10,000-pixel chip inline, no bulk delete the services would refuse anyway."""

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import RequestFactory

from factory.catalog.models import UltraServerModel
from factory.inventory.demo import load_demo_fleet
from factory.inventory.models import Chip, NetworkNode, PowerFeed, Rack, Site, UltraServer
from tenants.models import ApiToken, Tenant
from tenants.sovereignty.models import TransferBasis

OURS = ("tenants", "sovereignty", "events", "inventory", "catalog", "telemetry", "agents")
OURS += ("provisioning", "placement")
#: Fields only the system writes: its clocks, hashes, leases, what agents and BMCs report.
SYSTEM = {
    "created_at",
    "updated_at",
    "last_heartbeat_at",
    "unreachable_since",
    "isolated_since",
    "isolation_reason",
    "digest",
    "prev_hash",
    "record_hash",
    "lease_owner",
    "lease_expires_at",
    "last_login",
    "date_joined",
    "observed_at",
    "received_at",
}


@pytest.fixture
def person(db):
    load_demo_fleet()
    return get_user_model().objects.get(username="admin")  # a provider admin


def registered():
    return [(m, a) for m, a in admin.site._registry.items() if m._meta.app_label in OURS]


def test_labels_are_as_a_person_writes_them(db):
    assert UltraServer._meta.verbose_name_plural == "UltraServers"
    assert UltraServerModel._meta.verbose_name_plural == "UltraServer models"
    assert ApiToken._meta.verbose_name_plural == "API tokens"
    assert TransferBasis._meta.verbose_name_plural == "transfer bases"
    for model, _ in registered():
        plural = str(model._meta.verbose_name_plural)
        assert "ultra server" not in plural.lower(), model
        assert not plural.endswith("ss") and "api " not in plural, model


def test_the_admin_index_shows_those_labels(client, person):
    client.force_login(person)
    page = client.get("/admin/").content.decode()
    for label in ("UltraServers", "UltraServer models", "API tokens", "Transfer bases"):
        assert f">{label}</a>" in page, label
    assert "Ultra servers" not in page and "Transfer basiss" not in page


def test_system_fields_are_never_in_an_edit_form(person):
    request = RequestFactory().get("/admin/")
    request.user = person
    checked = 0
    for model, model_admin in registered():
        obj = model.objects.first()
        for instance in (None, obj) if obj is not None else (None,):
            if not model_admin.has_change_permission(request, instance) and instance:
                continue
            if instance is None and not model_admin.has_add_permission(request):
                continue
            form = model_admin.get_form(request, instance, change=instance is not None)
            editable = set(form.base_fields)
            assert not editable & SYSTEM, (model, editable & SYSTEM)
            checked += 1
        names = {f.name for f in model._meta.fields}
        shown = set(model_admin.get_readonly_fields(request, obj))
        if model_admin.has_change_permission(request, obj):
            for stamp in names & {"created_at", "updated_at"}:
                assert stamp in shown or not model_admin.has_view_permission(request), (
                    model,
                    stamp,
                )
    assert checked >= 10


def test_the_ultraserver_page_summarises_its_chips_with_links(client, person):
    client.force_login(person)
    server = UltraServer.objects.filter(model__slug="trn3-ultraserver").first()
    Chip.objects.filter(ultraserver=server, index__in=[3, 7]).update(health="failed")
    page = client.get(f"/admin/inventory/ultraserver/{server.pk}/change/").content.decode()
    assert "chip_set-TOTAL_FORMS" not in page and "chips-TOTAL_FORMS" not in page
    assert page.count("/admin/inventory/chip/") < 10  # not a row per chip
    link = f"/admin/inventory/chip/?ultraserver__id__exact={server.pk}&amp;health=failed"
    assert f'<a href="{link}">2 failed</a>' in page
    assert "142 ok" in page and "all 144 chips" in page
    listing = client.get(link.replace("&amp;", "&"))
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 2


def test_no_bulk_delete_where_deleting_is_refused_anyway(client, person):
    client.force_login(person)
    refused = [Site, Rack, Tenant, NetworkNode]
    for model in refused:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        response = client.get(url)
        assert response.status_code == 200, url
        assert "delete_selected" not in response.content.decode(), url
    feeds = client.get("/admin/inventory/powerfeed/").content.decode()
    assert "delete_selected" in feeds  # a feed can go: its bulk delete stays
    request = RequestFactory().get("/admin/")
    request.user = person
    for model, model_admin in registered():
        if not model_admin.has_delete_permission(request):
            assert "delete_selected" not in model_admin.get_actions(request), model
    assert PowerFeed.objects.exists()
