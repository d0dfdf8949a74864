"""The console's pages with Django's test client: render, scoping, roles, query counts."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from factory.inventory.demo import load_demo_fleet
from factory.inventory.models import Site, UltraServer
from provisioning.demo import load_demo_provisioning
from provisioning.models import MaintenanceWindow, Workflow
from tests.support.telemetry import agent_client, post, server_report


@pytest.fixture
def demo(db):
    load_demo_fleet()
    load_demo_provisioning()
    return {s.code: s for s in Site.objects.all()}


def login(client, username):
    client.force_login(get_user_model().objects.get(username=username))
    return client


def test_pages_render_for_a_provider_admin(client, demo):
    login(client, "admin")
    fra = demo["FRA1"]
    server = UltraServer.objects.filter(rack__site=fra).first()
    agent, _ = agent_client(fra)
    post(agent, [server_report(server.serial, 1, health=[0] * 143 + [2])])
    pages = [
        "/console/",
        f"/console/sites/{fra.pk}/",
        f"/console/racks/{server.rack_id}/",
        f"/console/ultraservers/{server.pk}/",
        f"/console/ultraservers/{server.pk}/?color=temp",
        f"/console/ultraservers/{server.pk}/?color=util",
        "/console/workflows/",
        "/console/workflows/new-upgrade/",
        f"/console/workflows/new-upgrade/?site={fra.pk}",
        "/console/sovereignty/",
        "/console/sovereignty/log/",
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, (page, response.content[:500])
    heatmap = client.get(f"/console/ultraservers/{server.pk}/").content.decode()
    assert heatmap.count('class="cell ') == 144 + 4  # every chip, plus the legend
    assert "failed" in heatmap


def test_anonymous_people_are_sent_to_log_in(client, demo):
    response = client.get("/console/")
    assert response.status_code == 302 and response["Location"].startswith("/console/login/")


def test_tenant_people_see_only_their_own(client, demo):
    login(client, "emily.carter")  # meridian admin
    fleet = client.get("/console/").content.decode()
    assert "IAD1" in fleet and "FRA1" not in fleet
    fra = demo["FRA1"]
    assert client.get(f"/console/sites/{fra.pk}/").status_code == 404
    other = UltraServer.objects.filter(rack__site=fra).first()
    assert client.get(f"/console/ultraservers/{other.pk}/").status_code == 404
    assert client.get(f"/console/racks/{other.rack_id}/").status_code == 404


def test_tenants_are_read_only_except_approvals(client, demo):
    login(client, "jonas.weber")  # bsia operator
    assert client.get("/console/workflows/new-upgrade/").status_code == 403
    window = MaintenanceWindow.objects.filter(site=demo["FRA1"]).first()
    window.status = "proposed"
    window.save()
    page = client.get("/console/sovereignty/").content.decode()
    assert "Approve window" not in page  # an operator waits for the tenant's admins
    assert (
        client.post(f"/console/sovereignty/maintenance-windows/{window.pk}/approve/").status_code
        == 403
    )
    login(client, "anna.schneider")  # bsia admin
    assert "Approve window" in client.get("/console/sovereignty/").content.decode()
    response = client.post(f"/console/sovereignty/maintenance-windows/{window.pk}/approve/")
    assert response.status_code == 302
    window.refresh_from_db()
    assert window.status == "approved" and window.decided_by == "anna.schneider"


def test_fleet_page_queries_do_not_grow_with_sites(client, demo):
    login(client, "admin")
    with CaptureQueriesContext(connection) as queries:
        client.get("/console/")
    assert len(queries) <= 20


def test_provider_admin_starts_and_pauses_a_rolling_upgrade(client, demo):
    login(client, "admin")
    fra = demo["FRA1"]
    servers = [s.pk for s in UltraServer.objects.filter(rack__site=fra)]
    response = client.post(
        "/console/workflows/new-upgrade/",
        {
            "site": fra.pk,
            "servers": servers,
            "firmware_version": "2026.11.0",
            "batch_size": 2,
            "soak_seconds": 0,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    workflow = Workflow.objects.get(kind="upgrade")
    assert workflow.targets.count() == len(servers)
    client.post(f"/console/workflows/{workflow.pk}/steer/pause/", {"reason": "lunch"})
    workflow.refresh_from_db()
    assert workflow.state == "paused"
    # a tenant's admin may not steer it
    login(client, "anna.schneider")
    assert client.post(f"/console/workflows/{workflow.pk}/steer/resume/").status_code == 403


def test_a_bad_upgrade_form_says_why_and_starts_nothing(client, demo):
    login(client, "admin")
    fra = demo["FRA1"]
    servers = [s.pk for s in UltraServer.objects.filter(rack__site=fra)]
    form = {"site": fra.pk, "servers": servers, "firmware_version": "2026.11.0"}
    for bad, says in (
        ({"batch_size": "lots"}, "Enter a whole number."),
        ({"servers": []}, "targets: the selection matches no UltraServers"),  # the service's
        ({"firmware_version": ""}, "firmware_version is required"),
    ):
        response = client.post("/console/workflows/new-upgrade/", {**form, **bad})
        assert response.status_code == 200
        assert says in response.content.decode()
    # An artifact the tenant's provenance rule refuses: the refusal is shown, not a 500.
    from provisioning.models import FirmwareRelease

    model = UltraServer.objects.filter(rack__site=fra).first().model
    FirmwareRelease.objects.create(model=model, version="9.9-unsigned", origin="aws-neuron")
    refused = client.post(
        "/console/workflows/new-upgrade/", {**form, "firmware_version": "9.9-unsigned"}
    )
    assert refused.status_code == 200
    # Above the form, as in the admin: each deciding rule with its reason.
    assert "Firmware and software only from aws-neuron, nvidia, signed" in refused.content.decode()
    assert not Workflow.objects.exists()
