"""The same promises for every endpoint: authentication, tenant isolation, roles, clean 400s
that write nothing, and list query counts that do not grow with the rows."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from factory.agents.models import AgentCommand
from factory.catalog.models import UltraServerModel
from factory.inventory.models import Chip, PowerFeed, Rack, Site, UltraServer
from factory.wire import CommandKind
from provisioning.models import MaintenanceWindow, Notification, Workflow
from tenants.models import AuditEvent, Tenant
from tests.support.api import assert_error_body
from tests.support.fleet import Fleet, make_rack, make_server, make_site, make_tenant


@dataclass
class Endpoint:
    url: str
    model: type
    own: Callable[[Fleet], object]  # an object of tenant alpha
    foreign: Callable[[Fleet], object]  # an object of tenant beta
    create: Callable[[Fleet], dict] | None  # a valid payload (alpha)
    invalid: Callable[[Fleet], dict] | None  # an invalid payload
    invalid_fields: set[str]
    patch: dict | None  # a valid change
    grow: Callable[[Fleet, int], None]  # add n rows that the list shows


_serial = itertools.count()


def _grow_sites(fleet, n):
    for _ in range(n):
        make_site(fleet.alpha, f"GRW{next(_serial)}")


def _grow_racks(fleet, n):
    site = fleet.sites["alpha"]
    for _ in range(n):
        make_rack(site, f"GROW-R{next(_serial)}", paths=("A",))


def _grow_feeds(fleet, n):
    rack = fleet.racks["alpha"]
    for _ in range(n):
        PowerFeed.objects.create(
            rack=rack, name=f"GROW-F{next(_serial)}", path="A", voltage=400, amperage=10
        )


def _grow_servers(fleet, n):
    site = make_site(fleet.alpha, f"GRW{next(_serial)}", power_kw="5000", cooling_kw="5000")
    rack = None
    for i in range(n):
        if i % 2 == 0:  # two Trn2 UltraServers (20U, air) per rack
            rack = make_rack(
                site, f"GROW-R{next(_serial)}", cooling="air", cooling_kw="100", amperage=200
            )
        make_server(
            f"GROW-{next(_serial)}", "trn2-ultraserver", rack=rack, position=1 + (i % 2) * 20
        )


def _grow_chips(fleet, n):
    make_server(f"GROW-{next(_serial)}", "trn2-ultraserver", tenant=fleet.alpha)  # 64 more chips


def _grow_tenants(fleet, n):
    for _ in range(n):
        make_tenant(f"grow{next(_serial)}")


def _window(site) -> MaintenanceWindow:
    return MaintenanceWindow.objects.get_or_create(
        site=site,
        name="sundays",
        defaults={"weekdays": [6], "start_time": "02:00", "duration_minutes": 240},
    )[0]


def _workflow(site) -> Workflow:
    return Workflow.objects.get_or_create(site=site, reason="fixture", kind="deploy")[0]


def _command(site) -> AgentCommand:
    return AgentCommand.objects.get_or_create(site=site, kind=CommandKind.QUERY_STATE)[0]


def _notification(fleet, tenant) -> Notification:
    return Notification.objects.get_or_create(
        tenant=tenant, kind="drain", message="fixture", site=fleet.sites[tenant.slug]
    )[0]


def _grow_windows(fleet, n):
    for _ in range(n):
        MaintenanceWindow.objects.create(
            site=fleet.sites["alpha"],
            name=f"w{next(_serial)}",
            weekdays=[0],
            start_time="01:00",
            duration_minutes=60,
        )


def _grow_workflows(fleet, n):
    for _ in range(n):
        Workflow.objects.create(site=fleet.sites["alpha"], kind="upgrade", reason="grow")


def _grow_commands(fleet, n):
    AgentCommand.objects.bulk_create(
        AgentCommand(site=fleet.sites["alpha"], kind=CommandKind.RESET) for _ in range(n)
    )


def _grow_notifications(fleet, n):
    for _ in range(n):
        Notification.objects.create(tenant=fleet.alpha, kind="drain", message="grow")


ENDPOINTS = {
    "sites": Endpoint(
        "/api/v1/sites/",
        Site,
        lambda f: f.sites["alpha"],
        lambda f: f.sites["beta"],
        lambda f: {
            "code": "NEW1",
            "name": "New hall",
            "tenant": f.alpha.pk,
            "country": "DE",
            "time_zone": "Europe/Berlin",
            "contracted_power_kw": 500,
            "contracted_cooling_kw": 500,
        },
        lambda f: {
            "code": "bad code",
            "name": "x",
            "tenant": f.alpha.pk,
            "country": "XX",
            "time_zone": "Mars/Olympus",
            "contracted_power_kw": -1,
            "contracted_cooling_kw": 1,
        },
        {"code", "country", "time_zone", "contracted_power_kw"},
        {"name": "Renamed hall"},
        _grow_sites,
    ),
    "racks": Endpoint(
        "/api/v1/racks/",
        Rack,
        lambda f: f.racks["alpha"],
        lambda f: f.racks["beta"],
        lambda f: {
            "site": f.sites["alpha"].pk,
            "name": "ALP1-R09",
            "cooling_type": "liquid",
            "cooling_capacity_kw": 100,
        },
        lambda f: {
            "site": f.sites["alpha"].pk,
            "name": "",
            "cooling_type": "steam",
            "cooling_capacity_kw": -5,
            "u_height": 0,
        },
        {"name", "cooling_type", "cooling_capacity_kw", "u_height"},
        {"status": "planned"},
        _grow_racks,
    ),
    "power-feeds": Endpoint(
        "/api/v1/power-feeds/",
        PowerFeed,
        lambda f: f.racks["alpha"].power_feeds.first(),
        lambda f: f.racks["beta"].power_feeds.first(),
        lambda f: {
            "rack": f.racks["alpha"].pk,
            "name": "ALP1-R01-A2",
            "path": "A",
            "voltage": 400,
            "amperage": 100,
            "phase": "three",
        },
        lambda f: {
            "rack": f.racks["alpha"].pk,
            "name": "X",
            "path": "C",
            "voltage": 5,
            "amperage": 100,
            "power_factor": 2,
        },
        {"path", "voltage", "power_factor"},
        {"amperage": 450},
        _grow_feeds,
    ),
    "ultraservers": Endpoint(
        "/api/v1/ultraservers/",
        UltraServer,
        lambda f: f.servers["alpha"],
        lambda f: f.servers["beta"],
        lambda f: {
            "serial": "NEW-1",
            "model": UltraServerModel.objects.get(slug="trn2-ultraserver").pk,
            "tenant": f.alpha.pk,
        },
        lambda f: {"serial": "", "model": 999999, "position": 0, "lifecycle_state": "exploded"},
        {"serial", "model", "position", "lifecycle_state"},
        {"firmware_version": "2026.11.2"},
        _grow_servers,
    ),
    "chips": Endpoint(
        "/api/v1/chips/",
        Chip,
        lambda f: f.servers["alpha"].chips.first(),
        lambda f: f.servers["beta"].chips.first(),
        None,
        None,
        set(),
        {"health": "degraded", "health_note": "HBM ECC storm"},
        _grow_chips,
    ),
    "tenants": Endpoint(
        "/api/v1/tenants/",
        Tenant,
        lambda f: f.alpha,
        lambda f: f.beta,
        lambda f: {
            "name": "Gamma",
            "slug": "gamma",
            "kind": "research",
            "country": "FR",
            "contact_email": "noc@gamma.example",
        },
        lambda f: {
            "name": "",
            "slug": "no spaces!",
            "kind": "pirate",
            "country": "ZZ",
            "contact_email": "not-an-email",
        },
        {"name", "slug", "kind", "country", "contact_email"},
        {"contact_email": "ops@alpha.example"},
        _grow_tenants,
    ),
    "audit-events": Endpoint(
        "/api/v1/audit-events/",
        AuditEvent,
        lambda f: AuditEvent.objects.filter(tenant_id=f.alpha.pk).first(),
        lambda f: AuditEvent.objects.filter(tenant_id=f.beta.pk).first(),
        None,
        None,
        set(),
        None,
        _grow_tenants,
    ),
    "maintenance-windows": Endpoint(
        "/api/v1/maintenance-windows/",
        MaintenanceWindow,
        lambda f: _window(f.sites["alpha"]),
        lambda f: _window(f.sites["beta"]),
        lambda f: {
            "site": f.sites["alpha"].pk,
            "name": "saturday nights",
            "weekdays": [5],
            "start_time": "22:00",
            "duration_minutes": 360,
        },
        lambda f: {
            "site": f.sites["alpha"].pk,
            "name": "",
            "weekdays": [],
            "start_time": "25:61",
            "duration_minutes": 5,
        },
        {"name", "weekdays", "start_time", "duration_minutes"},
        {"duration_minutes": 120},
        _grow_windows,
    ),
    "workflows": Endpoint(
        "/api/v1/workflows/",
        Workflow,
        lambda f: _workflow(f.sites["alpha"]),
        lambda f: _workflow(f.sites["beta"]),
        None,
        None,
        set(),
        None,
        _grow_workflows,
    ),
    "agent-commands": Endpoint(
        "/api/v1/agent-commands/",
        AgentCommand,
        lambda f: _command(f.sites["alpha"]),
        lambda f: _command(f.sites["beta"]),
        None,
        None,
        set(),
        None,
        _grow_commands,
    ),
    "notifications": Endpoint(
        "/api/v1/notifications/",
        Notification,
        lambda f: _notification(f, f.alpha),
        lambda f: _notification(f, f.beta),
        None,
        None,
        set(),
        None,
        _grow_notifications,
    ),
}
WRITABLE = [name for name, e in ENDPOINTS.items() if e.create]
NAMES = list(ENDPOINTS)


def detail(endpoint: Endpoint, obj) -> str:
    return f"{endpoint.url}{obj.pk}/"


@pytest.mark.parametrize("name", NAMES)
def test_authentication_is_required(fleet, name):
    endpoint = ENDPOINTS[name]
    anonymous = APIClient()
    body = assert_error_body(anonymous.get(endpoint.url), 401)
    assert body["code"] == "not_authenticated"
    assert_error_body(anonymous.get(detail(endpoint, endpoint.own(fleet))), 401)
    bogus = APIClient()
    bogus.credentials(HTTP_AUTHORIZATION="Bearer afc_not-a-real-token")
    assert assert_error_body(bogus.get(endpoint.url), 401)["code"] == "invalid_token"


@pytest.mark.parametrize("name", NAMES)
def test_other_tenants_objects_are_404_and_never_listed(fleet, name):
    endpoint = ENDPOINTS[name]
    client = fleet.client("alpha_admin")
    own, foreign = endpoint.own(fleet), endpoint.foreign(fleet)
    assert_error_body(client.get(detail(endpoint, foreign)), 404)
    listed = {str(row["id"]) for row in client.get(endpoint.url + "?limit=1000").json()["results"]}
    assert str(own.pk) in listed
    assert str(foreign.pk) not in listed
    # A provider admin sees both.
    admin_listed = {
        str(row["id"])
        for row in fleet.client("provider_admin")
        .get(endpoint.url + "?limit=1000")
        .json()["results"]
    }
    assert {str(own.pk), str(foreign.pk)} <= admin_listed


@pytest.mark.parametrize("name", ["racks", "power-feeds", "chips"])
def test_tenant_writers_get_404_for_other_tenants_objects(fleet, name):
    endpoint = ENDPOINTS[name]
    client = fleet.client("alpha_operator")
    foreign = endpoint.foreign(fleet)
    before = endpoint.model.objects.filter(pk=foreign.pk).values().get()
    assert_error_body(client.patch(detail(endpoint, foreign), endpoint.patch), 404)
    if name != "chips":
        assert_error_body(client.delete(detail(endpoint, foreign)), 404)
    assert endpoint.model.objects.filter(pk=foreign.pk).values().get() == before


@pytest.mark.parametrize("name", [n for n in NAMES if ENDPOINTS[n].patch])
def test_viewers_may_not_write(fleet, name):
    endpoint = ENDPOINTS[name]
    client = fleet.client("alpha_viewer")
    own = endpoint.own(fleet)
    before = endpoint.model.objects.filter(pk=own.pk).values().get()
    events = AuditEvent.objects.count()
    assert (
        assert_error_body(client.patch(detail(endpoint, own), endpoint.patch), 403)["code"]
        == "role"
    )
    if endpoint.create:
        assert_error_body(client.post(endpoint.url, endpoint.create(fleet)), 403)
        assert_error_body(client.delete(detail(endpoint, own)), 403)
    assert endpoint.model.objects.filter(pk=own.pk).values().get() == before
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize("name", WRITABLE)
def test_invalid_input_is_400_naming_fields_and_writes_nothing(fleet, name):
    endpoint = ENDPOINTS[name]
    client = fleet.client("provider_admin")
    rows, events = endpoint.model.objects.count(), AuditEvent.objects.count()
    body = assert_error_body(client.post(endpoint.url, endpoint.invalid(fleet)), 400)
    assert body["code"] == "invalid"
    assert endpoint.invalid_fields <= {e["field"] for e in body["errors"]}
    assert endpoint.model.objects.count() == rows
    assert AuditEvent.objects.count() == events
    # Not JSON at all: still a clean 400.
    response = client.generic("POST", endpoint.url, "{not json", content_type="application/json")
    assert assert_error_body(response, 400)["code"] == "parse_error"
    assert endpoint.model.objects.count() == rows


@pytest.mark.parametrize("name", WRITABLE)
def test_provider_admin_create_update_delete_is_audited(fleet, name):
    endpoint = ENDPOINTS[name]
    client = fleet.client("provider_admin")
    created = client.post(endpoint.url, endpoint.create(fleet), HTTP_X_REQUEST_ID="req-create-1")
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    event = AuditEvent.objects.get(
        object_type=endpoint.model._meta.label_lower, object_id=str(pk), action="create"
    )
    assert event.actor_username == "padmin" and event.source == "api"
    assert event.request_id == "req-create-1" and event.before is None and event.after["id"] == pk
    updated = client.patch(f"{endpoint.url}{pk}/", endpoint.patch)
    assert updated.status_code == 200, updated.content
    change = AuditEvent.objects.get(
        object_id=str(pk), object_type=event.object_type, action="update"
    )
    assert set(endpoint.patch) <= set(change.changed_fields)
    assert client.delete(f"{endpoint.url}{pk}/").status_code == 204
    assert not endpoint.model.objects.filter(pk=pk).exists()
    deleted = AuditEvent.objects.get(
        object_id=str(pk), object_type=event.object_type, action="delete"
    )
    assert deleted.after is None and deleted.before["id"] == pk


@pytest.mark.parametrize("name", NAMES)
def test_list_query_count_does_not_grow_with_rows(fleet, name):
    endpoint = ENDPOINTS[name]
    client = fleet.client("provider_admin")
    url = endpoint.url + "?limit=1000"
    endpoint.grow(fleet, 1)
    client.get(url)  # warm: token last-used stamp, content types
    with CaptureQueriesContext(connection) as one:
        first = client.get(url)
    endpoint.grow(fleet, 49)
    with CaptureQueriesContext(connection) as many:
        second = client.get(url)
    assert first.status_code == second.status_code == 200
    assert second.json()["count"] > first.json()["count"]
    assert len(many) == len(one), [q["sql"] for q in many.captured_queries]


def test_pagination_defaults_and_limits(fleet):
    _grow_tenants(fleet, 60)
    client = fleet.client("provider_admin")
    body = client.get("/api/v1/tenants/").json()
    assert body["count"] == 62 and len(body["results"]) == 50 and body["next"]
    assert len(client.get("/api/v1/tenants/?limit=5000").json()["results"]) == 62  # capped at 1000


def test_filters_and_ordering(fleet):
    client = fleet.client("provider_admin")
    rows = client.get("/api/v1/sites/?country=US").json()["results"]
    assert [r["code"] for r in rows] == ["BET1"]
    codes = [r["code"] for r in client.get("/api/v1/sites/?ordering=-code").json()["results"]]
    assert codes == sorted(codes, reverse=True)
    bad = client.get("/api/v1/sites/?status=nonsense")
    assert_error_body(bad, 400)
    assert bad.json()["errors"][0]["field"] == "status"
