"""Filters that never lie: generated NetBox-style lookups, natural keys, ``q``, and a 400 for
every query parameter or ordering field an endpoint does not know."""

from __future__ import annotations

import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from factory.inventory.models import Chip, UltraServer
from provisioning.models import Workflow
from tests.support.api import assert_error_body
from tests.support.fleet import make_rack, make_server, make_site

CHIPS = "/api/v1/chips/"
SERVERS = "/api/v1/ultraservers/"
RACKS = "/api/v1/racks/"
SITES = "/api/v1/sites/"


@pytest.fixture
def admin(fleet):
    return fleet.client("provider_admin")


def count(client, url: str, params=None) -> int:
    response = client.get(url, params or {})
    assert response.status_code == 200, response.content
    return response.json()["count"]


def serials(client, url: str, params=None) -> list[str]:
    response = client.get(url, {**(params or {}), "limit": 1000})
    assert response.status_code == 200, response.content
    return [row["serial"] for row in response.json()["results"]]


# --- lookups -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("index__gte=140", 4),  # 140..143 (was: all 144, the filter silently ignored)
        ("index__gt=140", 3),
        ("index__lte=3", 4),
        ("index__lt=3", 3),
        ("index=7", 1),
        ("index=7&index=9&index=11", 3),  # repeated: OR-ed
        ("index__in=1,2,3,400", 3),
        ("index__n=0&index__n=1", 142),
        ("index__gte=10&index__lt=20", 10),  # different lookups: AND-ed
        ("serial__ic=c00", 10),  # ALP1-SRV1-C000 .. C009
        ("serial__nic=c00", 134),
        ("serial__isw=alp1-srv1-c01", 10),
        ("serial__iew=-C143", 1),
        ("serial__ie=alp1-srv1-c042", 1),
        ("serial=alp1-srv1-c042", 0),  # plain equality is exact
        ("serial__n=ALP1-SRV1-C042", 143),
        ("serial__in=ALP1-SRV1-C000,ALP1-SRV1-C001,nope", 2),
        ("health=ok", 144),
        ("health__n=ok", 0),
        ("health__in=degraded,failed", 0),
        ("q=c14", 4),  # C140..C143
    ],
)
def test_chip_lookups(fleet, admin, query, expected):
    url = f"{CHIPS}?ultraserver={fleet.servers['alpha'].pk}&{query}"
    assert count(admin, url) == expected


def test_string_number_date_and_null_lookups_on_ultraservers(fleet, admin):
    UltraServer.objects.filter(pk=fleet.servers["alpha"].pk).update(firmware_version="2026.10.1")
    UltraServer.objects.filter(pk=fleet.servers["beta"].pk).update(firmware_version="2026.11.2")
    spare = make_server("SPARE-1", "trn2-ultraserver")
    assert serials(admin, SERVERS, {"firmware_version__n": "2026.10.1"}) == [
        "BET1-SRV1",
        "SPARE-1",
    ]
    assert serials(admin, SERVERS, {"firmware_version__isw": "2026.1"}) == [
        "ALP1-SRV1",
        "BET1-SRV1",
    ]
    assert serials(admin, SERVERS, {"firmware_version__iew": ".2"}) == ["BET1-SRV1"]
    assert serials(admin, SERVERS, {"rack__isnull": "true"}) == ["SPARE-1"]
    assert serials(admin, SERVERS, {"rack__isnull": "false", "position__lte": 1}) == [
        "ALP1-SRV1",
        "BET1-SRV1",
    ]
    assert serials(admin, SERVERS, {"unplaced": "true"}) == ["SPARE-1"]
    assert serials(admin, SERVERS, {"tenant__isnull": "true"}) == ["SPARE-1"]
    assert serials(admin, SERVERS, {"position__isnull": "true"}) == ["SPARE-1"]
    created = spare.created_at.isoformat()
    assert serials(admin, SERVERS, {"created_at__gte": created}) == ["SPARE-1"]
    assert serials(admin, SERVERS, {"created_at__lt": created}) == ["ALP1-SRV1", "BET1-SRV1"]
    assert serials(admin, SERVERS, {"lifecycle_state__n": "planned"}) == []
    assert serials(admin, SERVERS, {"in_maintenance": "false", "q": "srv1"}) == [
        "ALP1-SRV1",
        "BET1-SRV1",
    ]
    # q is case-insensitive contains over serial and the firmware and runtime versions.
    assert serials(admin, SERVERS, {"q": "11.2"}) == ["BET1-SRV1"]


def test_repeated_parameters_are_ored(fleet, admin):
    rows = admin.get(SITES, {"code": ["ALP1", "BET1", "NONE"]}).json()["results"]
    assert sorted(r["code"] for r in rows) == ["ALP1", "BET1"]
    assert count(admin, RACKS, {"site": ["ALP1", "BET1"]}) == 2
    assert count(admin, RACKS, {"site__n": ["ALP1", "BET1"]}) == 0


def test_bad_values_are_400_naming_the_filter(admin):
    for url, field in [
        (f"{CHIPS}?index__gte=many", "index__gte"),
        (f"{CHIPS}?index__in=1,x", "index__in"),
        (f"{CHIPS}?health=sparkly", "health"),
        (f"{SERVERS}?in_maintenance=maybe", "in_maintenance"),
        (f"{SERVERS}?rack__isnull=perhaps", "rack__isnull"),
        (f"{SERVERS}?created_at__gte=yesterday", "created_at__gte"),
        (f"{SERVERS}?created_at__gte=0001-01-01T00:00:00%2B05:00", "created_at__gte"),
        (f"{SERVERS}?serial__ic=%00", "serial__ic"),
        (f"{CHIPS}?index=99999999999999999999999", "index"),
    ]:
        body = assert_error_body(admin.get(url), 400)
        assert [e["field"] for e in body["errors"]] == [field], (url, body)


# --- natural keys ------------------------------------------------------------------------------


def test_natural_keys_or_ids(fleet, admin):
    site, rack, server = fleet.sites["alpha"], fleet.racks["alpha"], fleet.servers["alpha"]
    for value in (site.code, str(site.pk)):
        assert [r["name"] for r in admin.get(RACKS, {"site": value}).json()["results"]] == [
            rack.name
        ]
    assert count(admin, RACKS, {"tenant": "alpha"}) == 1
    assert count(admin, RACKS, {"tenant": fleet.alpha.pk}) == 1
    assert serials(admin, SERVERS, {"rack": rack.name}) == [server.serial]
    assert serials(admin, SERVERS, {"site": "BET1"}) == ["BET1-SRV1"]
    assert serials(admin, SERVERS, {"model": "trn3-ultraserver", "site__n": "ALP1"}) == [
        "BET1-SRV1"
    ]
    assert count(admin, CHIPS, {"ultraserver": server.serial}) == 144
    assert count(admin, CHIPS, {"rack": rack.name, "site": "ALP1", "tenant": "alpha"}) == 144
    assert count(admin, CHIPS, {"site__in": "ALP1,BET1"}) == 288
    assert count(admin, "/api/v1/power-feeds/", {"site": "ALP1"}) == 2
    assert count(admin, "/api/v1/catalog/ultraserver-models/", {"chip_model": "trainium3"}) == 1
    # Matching nothing is an empty list, not a 400; nor is a malformed or huge id.
    for value in ("NOPE", "999999", "12abc", "99999999999999999999999", "-1"):
        assert count(admin, RACKS, {"site": value}) == 0, value
    Workflow.objects.create(site=site, kind="deploy", reason="natural keys")
    assert count(admin, "/api/v1/workflows/", {"site": "ALP1"}) == 1
    assert count(admin, "/api/v1/workflows/", {"site": "BET1"}) == 0


def test_natural_keys_stay_within_the_callers_tenants(fleet):
    client = fleet.client("alpha_admin")
    assert count(client, RACKS, {"site": "BET1"}) == 0
    assert count(client, CHIPS, {"ultraserver": "BET1-SRV1"}) == 0


# --- q -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "q", "expected"),
    [
        (SITES, "alp", 1),  # code
        (SITES, "site b", 1),  # name
        (RACKS, "r01", 2),
        (SERVERS, "bet1-", 1),
        (CHIPS, "srv1-c143", 2),
        ("/api/v1/tenants/", "ALPH", 1),
        ("/api/v1/workflows/", "ROLLING", 1),
        (SITES, "nothing-like-it", 0),
    ],
)
def test_q_searches_case_insensitively(fleet, admin, url, q, expected):
    Workflow.objects.create(site=fleet.sites["alpha"], kind="deploy", reason="Rolling fix")
    assert count(admin, url, {"q": q}) == expected


# --- unknown parameters and orderings ----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"{SERVERS}?serial__ic=trn3&serial__bogus=1",
        f"{SERVERS}?firmware__n=1",
        f"{CHIPS}?index__between=1",
        f"{SITES}?colour=red",
        "/api/v1/tokens/?q=mine",  # no search here: refused, not ignored
        "/api/v1/sovereignty/groups/?code=EU",
        "/api/v1/jobs/latest/?limit=5",  # not paged
    ],
)
def test_unknown_filter_is_400_naming_it(fleet, admin, url):
    body = assert_error_body(admin.get(url), 400)
    assert body["code"] == "unknown_filter"
    assert len(body["errors"]) == 1
    error = body["errors"][0]
    assert error["code"] == "unknown_filter"
    assert error["field"] in url and error["field"] in error["message"]


def test_unknown_filters_are_named_each(admin):
    body = assert_error_body(admin.get(f"{SITES}?a=1&b=2&code=ALP1"), 400)
    assert [(e["field"], e["code"]) for e in body["errors"]] == [
        ("a", "unknown_filter"),
        ("b", "unknown_filter"),
    ]


@pytest.mark.parametrize("ordering", ["bogus", "-code,bogus", "--code", "tenant__name"])
def test_unknown_ordering_is_400_naming_it(admin, ordering):
    body = assert_error_body(admin.get(SITES, {"ordering": ordering}), 400)
    assert body["code"] == "unknown_ordering"
    [error] = body["errors"]
    assert error["field"] == "ordering" and error["code"] == "unknown_ordering"
    assert ordering.split(",")[-1] in error["message"] and "code" in error["message"]


def test_known_orderings_still_order(fleet, admin):
    make_site(fleet.alpha, "AAA1")
    codes = [r["code"] for r in admin.get(SITES, {"ordering": "-code"}).json()["results"]]
    assert codes == sorted(codes, reverse=True)
    rows = admin.get(SITES, {"ordering": "country,-code"}).json()["results"]
    assert [r["code"] for r in rows] == ["ALP1", "AAA1", "BET1"]


def test_always_known_parameters(admin):
    for query in ("limit=1&offset=1", "format=json", "ordering=code", "brief=true"):
        assert admin.get(f"{SITES}?{query}").status_code == 200, query


def test_detail_routes_and_actions_accept_only_what_they_read(fleet, admin):
    server, site = fleet.servers["alpha"], fleet.sites["alpha"]
    # One object: no paging or ordering there.
    assert_error_body(admin.get(f"{SITES}{site.pk}/?limit=1"), 400)
    assert_error_body(admin.get(f"{SITES}{site.pk}/?ordering=code"), 400)
    assert admin.get(f"{SITES}{site.pk}/?country=DE").status_code == 200
    # Actions read their own parameters, and only those.
    telemetry = f"{SERVERS}{server.pk}/telemetry/"
    assert admin.get(telemetry, {"resolution": "raw"}).status_code == 200
    body = assert_error_body(admin.get(telemetry, {"resolution": "raw", "step": "5s"}), 400)
    assert body["errors"][0]["field"] == "step"
    for url in (
        f"{SERVERS}{server.pk}/chip-health/",
        f"{SITES}{site.pk}/power/",
        f"{SITES}{site.pk}/capacity/",
        f"{RACKS}{fleet.racks['alpha'].pk}/capacity/",
    ):
        assert admin.get(url).status_code == 200, url
        assert assert_error_body(admin.get(url, {"country": "DE"}), 400)["code"] == (
            "unknown_filter"
        )
    assert count(admin, "/api/v1/capacity/sites/", {"code": "ALP1"}) == 1
    workflow = Workflow.objects.create(site=site, kind="deploy", reason="steps")
    steps = f"/api/v1/workflows/{workflow.pk}/steps/"
    assert admin.get(steps, {"state": "pending", "limit": 5}).status_code == 200
    # The workflow list's filters are not the steps': they are refused, not applied to the workflow.
    body = assert_error_body(admin.get(steps, {"kind": "deploy"}), 400)
    assert body["errors"][0]["field"] == "kind"
    body = assert_error_body(admin.get(steps, {"state": "sleeping"}), 400)
    assert body["errors"][0]["field"] == "state"
    assert admin.get(f"/api/v1/workflows/{workflow.pk}/history/?limit=1").status_code == 200
    # Targets filter by state (issue 17); an unknown state is refused by name.
    assert admin.get(f"/api/v1/workflows/{workflow.pk}/targets/?state=failed").status_code == 200
    body = assert_error_body(admin.get(f"/api/v1/workflows/{workflow.pk}/targets/?state=x"), 400)
    assert body["errors"][0]["field"] == "state"
    assert admin.get("/api/v1/jobs/latest/?job=reconcile").status_code == 200


# --- schema and cost ---------------------------------------------------------------------------


def test_schema_lists_the_generated_lookups(admin):
    schema = admin.get("/api/schema/?format=json").json()
    params = {p["name"]: p for p in schema["paths"]["/api/v1/ultraservers/"]["get"]["parameters"]}
    for name in (
        "serial__ic",
        "serial__nic",
        "serial__isw",
        "serial__iew",
        "serial__ie",
        "serial__n",
        "serial__in",
        "position__gte",
        "created_at__lt",
        "rack__isnull",
        "site",
        "q",
    ):
        assert name in params, name
    assert params["site"]["schema"] == {"type": "array", "items": {"type": "string"}}
    assert params["serial__in"]["explode"] is False
    assert params["position__gte"]["schema"]["items"]["type"] == "integer"
    ordering = params["ordering"]["schema"]["items"]["enum"]
    assert "serial" in ordering and "-serial" in ordering
    chips = {p["name"] for p in schema["paths"]["/api/v1/chips/"]["get"]["parameters"]}
    assert {"index__gte", "index__lt", "health__n", "site", "rack", "ultraserver"} <= chips
    steps = schema["paths"]["/api/v1/workflows/{id}/steps/"]["get"]["parameters"]
    names = {p["name"] for p in steps}
    # The StepFilterSet's, generated; not the workflow list's.
    assert {n for n in names if n.startswith("state")} == {"state", "state__n", "state__in"}
    assert {"id", "limit", "offset"} <= names and not names & {"kind", "site", "q", "ordering"}
    state = next(p for p in steps if p["name"] == "state")
    assert "succeeded" in state["schema"]["items"]["enum"]


_serial = itertools.count()


def _grow(site, n):
    rack = None
    for i in range(n):
        if i % 2 == 0:
            rack = make_rack(
                site, f"QC-R{next(_serial)}", cooling="air", cooling_kw="100", amperage=200
            )
        make_server(f"QC-{next(_serial)}", "trn2-ultraserver", rack=rack, position=1 + (i % 2) * 20)


@pytest.mark.parametrize(
    ("url", "params"),
    [
        (SERVERS, {"site": "QCQ1", "serial__isw": "qc-", "lifecycle_state__n": "decommissioned"}),
        (SERVERS, {"tenant": "alpha", "q": "qc", "rack__isnull": "false", "position__gte": 1}),
        (CHIPS, {"site": "QCQ1", "index__lt": 8, "health__in": "ok,degraded", "q": "qc-"}),
        (RACKS, {"site": "QCQ1", "name__ic": "qc-r", "tenant__n": "beta"}),
    ],
)
def test_filtered_list_query_count_does_not_grow_with_rows(fleet, admin, url, params):
    site = make_site(fleet.alpha, "QCQ1", power_kw="5000", cooling_kw="5000")
    params = {**params, "limit": 1000}
    _grow(site, 2)
    admin.get(url, params)  # warm
    with CaptureQueriesContext(connection) as few:
        first = admin.get(url, params)
    _grow(site, 10)
    with CaptureQueriesContext(connection) as many:
        second = admin.get(url, params)
    assert first.status_code == second.status_code == 200, second.content
    assert second.json()["count"] > first.json()["count"] > 0
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


def test_chip_health_lookups_after_a_change(fleet, admin):
    server = fleet.servers["alpha"]
    Chip.objects.filter(ultraserver=server, index__in=[3, 5]).update(health="degraded")
    assert count(admin, CHIPS, {"ultraserver": server.serial, "health__n": "ok"}) == 2
    assert (
        count(admin, CHIPS, {"ultraserver": server.serial, "health": ["failed", "degraded"]}) == 2
    )


def test_browsable_api_renders_the_filter_form(admin):
    page = admin.get(f"{SERVERS}?site=ALP1&serial__ic=srv", HTTP_ACCEPT="text/html")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="serial__ic"' in html and 'name="lifecycle_state"' in html
