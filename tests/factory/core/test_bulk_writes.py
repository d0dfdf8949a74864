"""Bulk writes on the inventory list URLs (``tenants.api.bulk``): ``POST`` a list creates,
``PUT``/``PATCH`` a list of objects with ``id`` updates, ``DELETE`` a list of ``{"id"}``
deletes; one transaction, every item through the single write's path (serializer, roles,
``save_object``/``delete_object``, model ``clean()``, audit), errors indexed by item."""

from __future__ import annotations

import pytest

from factory.inventory.models import Chip, PowerFeed, Rack, UltraServer
from tenants.models import AuditEvent
from tests.support.api import assert_error_body
from tests.support.fleet import make_rack
from tests.support.schema import assert_conforms, openapi_schema


def _rack(site, name: str, **fields) -> dict:
    return {
        "name": name,
        "site": site.pk,
        "cooling_type": "liquid",
        "cooling_capacity_kw": 200,
        **fields,
    }


def _fields(errors: list[dict]) -> list[str]:
    return [e["field"] for e in errors]


# --- happy paths -------------------------------------------------------------------------------


def test_bulk_create_creates_every_item_audited_and_answers_them_in_order(fleet):
    client = fleet.client("alpha_operator")
    site = fleet.sites["alpha"]
    events = AuditEvent.objects.count()
    answer = client.post(
        "/api/v1/racks/",
        [_rack(site, f"ALP1-B{i}") for i in range(3)],
        format="json",
        HTTP_X_REQUEST_ID="bulk-create-1",
    )
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert [r["name"] for r in body] == ["ALP1-B0", "ALP1-B1", "ALP1-B2"]
    assert "Location" not in answer  # many objects: each has its own url
    for row in body:  # each as GET shows it
        assert client.get(f"/api/v1/racks/{row['id']}/").json() == row
    created = AuditEvent.objects.filter(action="create", object_type="inventory.rack")
    assert AuditEvent.objects.count() == events + 3
    assert {e.object_id for e in created.order_by("-id")[:3]} == {str(r["id"]) for r in body}
    assert_conforms(answer, "POST")
    # One object is still one object.
    single = client.post("/api/v1/racks/", _rack(site, "ALP1-B9"), format="json")
    assert single.status_code == 201 and single.json()["name"] == "ALP1-B9"
    assert single["Location"].endswith(f"/api/v1/racks/{single.json()['id']}/")


def test_bulk_create_of_ultraservers_runs_the_service_that_builds_their_chips(fleet):
    client = fleet.client("provider_admin")
    model = fleet.servers["alpha"].model
    answer = client.post(
        "/api/v1/ultraservers/",
        [{"serial": f"BULK-{i}", "model": model.pk, "tenant": fleet.alpha.pk} for i in range(2)],
        format="json",
    )
    assert answer.status_code == 201, answer.content
    for row in answer.json():
        assert Chip.objects.filter(ultraserver_id=row["id"]).count() == model.chip_count


def test_bulk_patch_and_put_update_every_item(fleet):
    client = fleet.client("alpha_admin")
    site = fleet.sites["alpha"]
    racks = [make_rack(site, f"ALP1-U{i}", paths=()) for i in range(3)]
    patched = client.patch(
        "/api/v1/racks/",
        [{"id": r.pk, "cooling_capacity_kw": 150 + i} for i, r in enumerate(racks)],
        format="json",
    )
    assert patched.status_code == 200, patched.content
    assert [r["cooling_capacity_kw"] for r in patched.json()] == [150, 151, 152]
    assert_conforms(patched, "PATCH")
    updates = AuditEvent.objects.filter(action="update", object_type="inventory.rack")
    assert updates.filter(object_id__in=[str(r.pk) for r in racks]).count() == 3
    put = client.put(
        "/api/v1/racks/",
        [{"id": r.pk, **_rack(site, f"ALP1-P{i}", u_height=42)} for i, r in enumerate(racks)],
        format="json",
    )
    assert put.status_code == 200, put.content
    assert [(r["name"], r["u_height"]) for r in put.json()] == [
        (f"ALP1-P{i}", 42) for i in range(3)
    ]
    assert_conforms(put, "PUT")


def test_bulk_delete_deletes_every_item_audited(fleet):
    client = fleet.client("alpha_operator")
    racks = [make_rack(fleet.sites["alpha"], f"ALP1-D{i}", paths=()) for i in range(3)]
    answer = client.delete("/api/v1/racks/", [{"id": r.pk} for r in racks], format="json")
    assert answer.status_code == 204, answer.content
    assert not Rack.objects.filter(pk__in=[r.pk for r in racks]).exists()
    deleted = AuditEvent.objects.filter(action="delete", object_type="inventory.rack")
    assert set(deleted.values_list("object_id", flat=True)) == {str(r.pk) for r in racks}


# --- all or nothing ----------------------------------------------------------------------------


def _snapshot():
    return (
        list(Rack.objects.order_by("pk").values()),
        list(UltraServer.objects.order_by("pk").values()),
        list(PowerFeed.objects.order_by("pk").values()),
        AuditEvent.objects.count(),
    )


def test_one_bad_item_writes_nothing_and_every_bad_item_is_named(fleet):
    client = fleet.client("alpha_operator")
    site = fleet.sites["alpha"]
    before = _snapshot()
    answer = client.post(
        "/api/v1/racks/",
        [
            _rack(site, "ALP1-N0"),
            _rack(site, "ALP1-N1", cooling_type="steam"),  # serializer: not a choice
            _rack(site, "ALP1-N2"),
            _rack(site, "ALP1-N0"),  # the same name as item 0: unique in its site
            _rack(site, "ALP1-N4", u_height=99),  # model validator: at most 60
        ],
        format="json",
    )
    body = assert_error_body(answer, 400)
    assert _fields(body["errors"]) == ["[1].cooling_type", "[3]", "[4].u_height"]
    assert body["errors"][0]["code"] == "invalid_choice"
    assert body["code"] == "invalid"
    assert "item [1]" in body["message"] and "nothing was written" in body["message"]
    assert _snapshot() == before  # no rack, no audit event


def test_model_clean_refusals_are_indexed_and_roll_back_the_items_before(fleet):
    """Refusals of the model's clean() (through save_ultraserver) name their item, and the
    items that were fine, chips and all, are undone."""
    client = fleet.client("provider_admin")
    rack = make_rack(fleet.sites["alpha"], "ALP1-PWR")
    model = fleet.servers["alpha"].model  # a Trn3: 42U
    before = _snapshot()
    chips = Chip.objects.count()
    answer = client.post(
        "/api/v1/ultraservers/",
        [
            {"serial": "PWR-0", "model": model.pk, "rack": rack.pk, "position": 1},
            {"serial": "PWR-1", "model": model.pk, "rack": rack.pk, "position": 37},
            {"serial": "PWR-0", "model": model.pk},
        ],
        format="json",
    )
    body = assert_error_body(answer, 400)
    reasons = [(e["field"], e["code"]) for e in body["errors"]]
    assert reasons[0] == ("[1].position", "position_outside_rack")  # and its power, cooling
    assert reasons[-1] == ("[2].serial", "unique")  # item 0's serial, though item 0 is undone
    assert {f.split(".")[0] for f, _ in reasons} == {"[1]", "[2]"}
    assert _snapshot() == before and Chip.objects.count() == chips


def test_a_refused_update_undoes_the_others_and_keeps_its_status(fleet):
    """A lifecycle jump the whitelist refuses is a 409 naming its item, as a single PATCH."""
    client = fleet.client("provider_admin")
    servers = [fleet.servers["alpha"], fleet.servers["beta"]]
    before = _snapshot()
    answer = client.patch(
        "/api/v1/ultraservers/",
        [
            {"id": servers[0].pk, "firmware_version": "9.9"},
            {"id": servers[1].pk, "lifecycle_state": "in-service"},  # planned: not yet
        ],
        format="json",
    )
    single = client.patch(
        f"/api/v1/ultraservers/{servers[1].pk}/", {"lifecycle_state": "in-service"}
    )
    body = assert_error_body(answer, single.status_code)
    assert answer.status_code == 409
    assert _fields(body["errors"]) == ["[1].lifecycle_state"]
    assert body["code"] == single.json()["code"]
    assert _snapshot() == before


def test_delete_refusals_of_the_delete_service_are_indexed(fleet):
    """The feeds of a loaded rack: without either, its server's power is no longer protected
    (delete_power_feed refuses each), so neither goes."""
    client = fleet.client("alpha_operator")
    feeds = list(PowerFeed.objects.filter(rack=fleet.racks["alpha"]).order_by("path"))
    answer = client.delete("/api/v1/power-feeds/", [{"id": f.pk} for f in feeds], format="json")
    body = assert_error_body(answer, 409)
    assert _fields(body["errors"]) == ["[0].rack", "[1].rack"]
    assert PowerFeed.objects.filter(pk__in=[f.pk for f in feeds]).count() == 2


# --- refusals of the request as a whole --------------------------------------------------------


def test_other_tenants_ids_are_a_404_for_the_whole_request(fleet):
    client = fleet.client("alpha_admin")
    own, foreign = fleet.racks["alpha"], fleet.racks["beta"]
    before = _snapshot()
    for method in ("patch", "delete"):
        answer = getattr(client, method)(
            "/api/v1/racks/",
            [{"id": own.pk, "u_height": 40}, {"id": foreign.pk, "u_height": 40}, {"id": 999999}],
            format="json",
        )
        body = assert_error_body(answer, 404)
        assert _fields(body["errors"]) == ["[1].id", "[2].id"]
        assert body["errors"][0]["message"] == body["errors"][1]["message"].replace(
            "999999", str(foreign.pk)
        )  # another tenant's is told apart from no rack at all by nothing
    assert _snapshot() == before


def test_malformed_bodies_are_400s_and_too_many_items_a_413(fleet):
    client = fleet.client("provider_admin")
    rack = fleet.racks["alpha"]
    cases = [
        ("patch", [], "empty", [None]),
        ("post", [], "empty", [None]),
        ("patch", {"id": rack.pk}, "not_a_list", [None]),
        ("delete", [{"id": rack.pk}, 7], "not_an_object", ["[1]"]),
        ("patch", [{"id": rack.pk}, {"id": rack.pk}], "duplicate", ["[1].id"]),
        ("delete", [{"id": "x"}, {}, {"id": 0}], "invalid", ["[0].id", "[1].id", "[2].id"]),
    ]
    for method, data, code, fields in cases:
        body = assert_error_body(
            getattr(client, method)("/api/v1/racks/", data, format="json"), 400
        )
        assert body["code"] == code, (method, data, body)
        assert _fields(body["errors"]) == fields, (method, data, body)
    body = assert_error_body(
        client.patch("/api/v1/racks/", [{"id": i} for i in range(1, 1002)], format="json"), 413
    )
    assert body["code"] == "too_many_items" and "at most 1000" in body["message"]
    servers = client.post("/api/v1/ultraservers/", [{}] * 101, format="json")
    assert "at most 100" in assert_error_body(servers, 413)["message"]
    stale = client.patch("/api/v1/racks/", [{"id": rack.pk}], format="json", HTTP_IF_MATCH='"abc"')
    assert assert_error_body(stale, 400)["errors"][0]["field"] == "If-Match"
    unknown = client.patch("/api/v1/racks/?site=1", [{"id": rack.pk}], format="json")
    assert assert_error_body(unknown, 400)["errors"][0]["code"] == "unknown_filter"


def test_an_items_etag_is_checked_like_if_match(fleet):
    client = fleet.client("provider_admin")
    racks = [fleet.racks["alpha"], fleet.racks["beta"]]
    tags = [client.get(f"/api/v1/racks/{r.pk}/")["ETag"] for r in racks]
    before = _snapshot()
    stale = client.patch(
        "/api/v1/racks/",
        [{"id": racks[0].pk, "etag": tags[0], "u_height": 44}, {"id": racks[1].pk, "etag": '"0"'}],
        format="json",
    )
    body = assert_error_body(stale, 412)
    assert _fields(body["errors"]) == ["[1].etag"] and body["code"] == "etag_mismatch"
    assert _snapshot() == before
    current = client.patch(
        "/api/v1/racks/",
        [{"id": r.pk, "etag": tag, "u_height": 44} for r, tag in zip(racks, tags, strict=True)],
        format="json",
    )
    assert current.status_code == 200, current.content
    # The tags are spent: the same body again is stale on every item.
    again = client.delete(
        "/api/v1/racks/", [{"id": r.pk, "etag": t} for r, t in zip(racks, tags, strict=True)]
    )
    assert _fields(assert_error_body(again, 412)["errors"]) == ["[0].etag", "[1].etag"]


# --- the same roles as single writes -----------------------------------------------------------

ROLES = ["provider_admin", "technician", "alpha_admin", "alpha_operator", "alpha_viewer"]
CHANGES = {
    # endpoint: (the object of tenant alpha, a change that keeps it as it is)
    "sites": (lambda f: f.sites["alpha"], {"city": ""}),
    "racks": (lambda f: f.racks["alpha"], {"u_height": 48}),
    "ultraservers": (lambda f: f.servers["alpha"], {"firmware_version": ""}),
    "chips": (lambda f: f.servers["alpha"].chips.order_by("index")[0], {"health_note": ""}),
}


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize("endpoint", list(CHANGES))
def test_bulk_updates_are_allowed_to_whom_single_updates_are(fleet, endpoint, who):
    client = fleet.client(who)
    target, change = CHANGES[endpoint]
    obj = target(fleet)
    single = client.patch(f"/api/v1/{endpoint}/{obj.pk}/", change, format="json")
    bulk = client.patch(f"/api/v1/{endpoint}/", [{"id": obj.pk, **change}], format="json")
    assert bulk.status_code == single.status_code, (single.content, bulk.content)
    if single.status_code == 200:
        [row] = bulk.json()
        assert {**row, "updated_at": None} == {**single.json(), "updated_at": None}
    else:
        assert bulk.json()["code"] == single.json()["code"]


@pytest.mark.parametrize("who", ROLES)
def test_bulk_creates_are_allowed_to_whom_single_creates_are(fleet, who):
    client = fleet.client(who)
    site = fleet.sites["alpha"]
    single = client.post("/api/v1/racks/", _rack(site, f"ALP1-S-{who}"), format="json")
    bulk = client.post("/api/v1/racks/", [_rack(site, f"ALP1-M-{who}")], format="json")
    assert bulk.status_code == single.status_code, (single.content, bulk.content)


def test_a_tenant_may_not_bulk_create_into_another_tenants_site(fleet):
    client = fleet.client("alpha_operator")
    answer = client.post(
        "/api/v1/racks/",
        [_rack(fleet.sites["alpha"], "ALP1-X"), _rack(fleet.sites["beta"], "BET1-X")],
        format="json",
    )
    body = assert_error_body(answer, 400)
    assert _fields(body["errors"]) == ["[1].site"]  # as a single create: no such site
    assert not Rack.objects.filter(name__in=["ALP1-X", "BET1-X"]).exists()


def test_chips_take_bulk_health_updates_but_no_bulk_create_or_delete(fleet):
    client = fleet.client("technician")
    chips = list(fleet.servers["alpha"].chips.order_by("index")[:3])
    answer = client.patch(
        "/api/v1/chips/",
        [{"id": c.pk, "health": "degraded", "health_note": "bulk"} for c in chips],
        format="json",
    )
    assert answer.status_code == 200, answer.content
    assert set(
        Chip.objects.filter(pk__in=[c.pk for c in chips]).values_list("health", flat=True)
    ) == {"degraded"}
    admin = fleet.client("provider_admin")
    assert admin.delete("/api/v1/chips/", [{"id": chips[0].pk}], format="json").status_code == 405
    assert admin.post("/api/v1/chips/", [{}], format="json").status_code == 405


@pytest.mark.parametrize("who", ["provider_admin", "alpha_operator", "alpha_viewer"])
def test_options_on_a_list_url_describes_the_create(fleet, who):
    """The list URL now takes PUT (bulk): OPTIONS must not look up one object for it."""
    client = fleet.client(who)
    for name in ("sites", "racks", "power-feeds", "ultraservers", "chips"):
        answer = client.options(f"/api/v1/{name}/")
        assert answer.status_code == 200, (name, answer.content)
        assert "PUT" not in answer.json().get("actions", {})
    own = client.options(f"/api/v1/racks/{fleet.racks['alpha'].pk}/")
    assert own.status_code == 200


# --- OpenAPI -----------------------------------------------------------------------------------


def test_the_bulk_operations_are_documented():
    paths = openapi_schema()["paths"]
    caps = {"sites": 100, "racks": 1000, "power-feeds": 1000, "ultraservers": 100}
    for name, cap in caps.items():
        item = paths[f"/api/v1/{name}/"]
        assert {"get", "post", "put", "patch", "delete"} <= set(item)
        post = item["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert [s.get("type", "object") for s in post["oneOf"]] == ["object", "array"]
        patch = item["patch"]["requestBody"]["content"]["application/json"]["schema"]
        assert patch["maxItems"] == cap and patch["items"]["allOf"][1]["required"] == ["id"]
        assert post["oneOf"][1]["maxItems"] == cap
        assert item["delete"]["requestBody"]["required"] is True
        assert "204" in item["delete"]["responses"] and "412" in item["patch"]["responses"]
        assert "If-Match" not in {p["name"] for p in item["patch"].get("parameters", [])}
    assert set(paths["/api/v1/chips/"]) == {"get", "put", "patch"}
    ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert "racks_bulk_partial_update" in ids
