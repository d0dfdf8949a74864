"""The placement API: ``capacity-reservations/`` and ``units/``, tenant-scoped (others' objects
404), tenant admins write, everyone who sees the site reads; bad input is a 400 naming the
field, an unmet constraint a 409 naming it, and nothing is written on a refusal. Capacity
endpoints count reserved servers and servers in units."""

from __future__ import annotations

import pytest

from provisioning.placement.models import CapacityReservation, ReservedServer, WorkloadUnit
from tests.provisioning.placement.reservation_support import Fab, build_fab, hours
from tests.support.api import assert_error_body
from tests.support.schema import assert_conforms

pytestmark = pytest.mark.django_db

RESERVATIONS = "/api/v1/capacity-reservations/"
UNITS = "/api/v1/units/"


@pytest.fixture
def fab(fleet) -> Fab:
    return build_fab(fleet.alpha)


def reservation_body(fab: Fab, **changes) -> dict:
    return {
        "site": fab.site.pk,
        "model": fab.model.pk,
        "count": 3,
        "starts_at": hours(0).isoformat(),
        "ends_at": hours(4).isoformat(),
        "constraint": "same_node",
        "name": "rufus-block",
        **changes,
    }


def unit_body(fab: Fab, **changes) -> dict:
    return {"site": fab.site.pk, "model": fab.model.pk, "name": "rufus", "size": 3, **changes}


def written() -> tuple[int, int, int]:
    return (
        CapacityReservation.objects.count(),
        ReservedServer.objects.count(),
        WorkloadUnit.objects.count(),
    )


def test_a_tenant_admin_reserves_and_everyone_of_the_site_reads(fleet, fab):
    admin = fleet.client("alpha_admin")
    created = admin.post(RESERVATIONS, reservation_body(fab), format="json")
    assert created.status_code == 201, created.content
    assert_conforms(created, "POST")
    body = created.json()
    assert created["Location"].endswith(f"{RESERVATIONS}{body['id']}/")
    assert body["state"] == "active" and len(body["servers"]) == 3
    assert set(body["servers"]) in (fab.under("L1"), fab.under("L2"))
    assert body["explanation"]["members"]

    for who in ("alpha_viewer", "provider_admin"):
        shown = fleet.client(who).get(f"{RESERVATIONS}{body['id']}/")
        assert shown.status_code == 200, (who, shown.content)
        assert_conforms(shown)
    listed = fleet.client("alpha_viewer").get(RESERVATIONS, {"site": fab.site.pk})
    assert_conforms(listed)
    assert [r["id"] for r in listed.json()["results"]] == [body["id"]]
    # The list counts the holds; the serials are the detail's.
    (row,) = listed.json()["results"]
    assert row["servers_count"] == 3 and "servers" not in row
    assert body["servers_count"] == 3
    assert (
        fleet.client("alpha_viewer").get(RESERVATIONS, {"state": "expired"}).json()["results"] == []
    )


def test_other_tenants_see_nothing_and_readers_write_nothing(fleet, fab):
    created = fleet.client("alpha_admin").post(RESERVATIONS, reservation_body(fab), format="json")
    pk = created.json()["id"]
    beta = fleet.client("beta_admin")
    assert_error_body(beta.get(f"{RESERVATIONS}{pk}/"), 404)
    assert beta.get(RESERVATIONS).json()["results"] == []
    assert_error_body(beta.post(f"{RESERVATIONS}{pk}/cancel/", {}, format="json"), 404)
    # Alpha's site is not there for beta: a 400 naming the field, nothing written.
    before = written()
    refused = assert_error_body(
        beta.post(RESERVATIONS, reservation_body(fab, starts_at=hours(5).isoformat(),
                                                 ends_at=hours(6).isoformat()), format="json"),
        400,
    )  # fmt: skip
    assert refused["errors"][0]["field"] == "site"
    for who in ("alpha_viewer", "alpha_operator", "provider_admin"):
        denied = fleet.client(who).post(
            RESERVATIONS, reservation_body(fab, starts_at=hours(5).isoformat(),
                                           ends_at=hours(6).isoformat()), format="json",
        )  # fmt: skip
        assert_error_body(denied, 403)
        assert_error_body(fleet.client(who).post(f"{RESERVATIONS}{pk}/cancel/"), 403)
    assert written() == before


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"count": 0}, "count"),
        ({"count": "many"}, "count"),
        ({"ends_at": hours(-1).isoformat()}, "ends_at"),
        ({"starts_at": "soon"}, "starts_at"),
        ({"constraint": "close"}, "constraint"),
        ({"max_hops": 4}, "max_hops"),
        ({"constraint": "max_hops"}, "max_hops"),
        ({"model": 99999}, "model"),
        ({"name": "x" * 101}, "name"),
    ],
)
def test_bad_reservations_are_400s_naming_the_field(fleet, fab, changes, field):
    before = written()
    response = fleet.client("alpha_admin").post(
        RESERVATIONS, reservation_body(fab, **changes), format="json"
    )
    body = assert_error_body(response, 400)
    assert field in [e["field"] for e in body["errors"]], body
    assert written() == before


def test_overlap_and_a_reservation_that_cannot_be_honoured(fleet, fab):
    admin = fleet.client("alpha_admin")
    first = admin.post(RESERVATIONS, reservation_body(fab), format="json").json()
    second = admin.post(RESERVATIONS, reservation_body(fab), format="json").json()
    assert not set(first["servers"]) & set(second["servers"])
    before = written()
    refused = assert_error_body(admin.post(RESERVATIONS, reservation_body(fab), format="json"), 409)
    assert (refused["code"], refused["errors"][0]["field"]) == ("count", "count")
    tight = assert_error_body(
        admin.post(
            RESERVATIONS,
            reservation_body(fab, count=2, constraint="max_hops", max_hops=0),
            format="json",
        ),
        409,
    )
    assert tight["errors"][0]["field"] == "constraint"
    assert written() == before


def test_cancel_honours_if_match_and_frees_the_servers(fleet, fab):
    admin = fleet.client("alpha_admin")
    created = admin.post(RESERVATIONS, reservation_body(fab), format="json")
    url = f"{RESERVATIONS}{created.json()['id']}/cancel/"
    stale = admin.post(url, {"reason": "x"}, format="json", HTTP_IF_MATCH='"stale"')
    assert_error_body(stale, 412)
    cancelled = admin.post(
        url, {"reason": "not needed"}, format="json", HTTP_IF_MATCH=created["ETag"]
    )
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["state"] == "cancelled" and cancelled.json()["servers"] == []
    again = assert_error_body(admin.post(url, {}, format="json"), 409)
    assert again["code"] == "reservation_not_cancellable"


def test_units_show_members_roles_racks_distances_and_the_explanation(fleet, fab):
    admin = fleet.client("alpha_admin")
    created = admin.post(UNITS, unit_body(fab, auto_replace=True), format="json")
    assert created.status_code == 201, created.content
    assert_conforms(created, "POST")
    unit = created.json()
    assert (unit["model"], unit["auto_replace"]) == (fab.model.pk, True)
    assert WorkloadUnit.objects.get(pk=unit["id"]).auto_replace is True
    assert len(unit["members"]) == 3
    roles = sorted(m["role"] for m in unit["members"])
    assert roles == ["follower", "follower", "leader"]
    leader = next(m for m in unit["members"] if m["role"] == "leader")
    assert unit["leader"] == leader["serial"] and leader["distance_to_leader"] == 0
    assert {m["distance_to_leader"] for m in unit["members"] if m["role"] == "follower"} == {2}
    assert all(m["rack"].startswith("FAB1-R") for m in unit["members"])
    assert unit["explanation"]["members"]

    viewer = fleet.client("alpha_viewer")
    shown = viewer.get(f"{UNITS}{unit['id']}/")
    assert shown.status_code == 200 and shown.json()["members"] == unit["members"]
    assert_conforms(shown)
    listed = viewer.get(UNITS, {"site": fab.site.pk, "state": "active", "ordering": "-name"})
    assert listed.status_code == 200, listed.content
    assert [u["id"] for u in listed.json()["results"]] == [unit["id"]]
    assert listed.json()["results"][0]["model"] == fab.model.pk
    assert listed.json()["results"][0]["auto_replace"] is True
    assert_error_body(fleet.client("beta_admin").get(f"{UNITS}{unit['id']}/"), 404)
    assert_error_body(viewer.post(f"{UNITS}{unit['id']}/release/"), 403)

    released = admin.post(f"{UNITS}{unit['id']}/release/", {"reason": "done"}, format="json")
    assert released.status_code == 200, released.content
    assert released.json()["state"] == "released"
    assert_error_body(admin.post(f"{UNITS}{unit['id']}/release/"), 409)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"size": 0}, "size"),
        ({"name": ""}, "name"),
        ({"spread": "zones"}, "spread"),
        ({"inputs": "weights"}, "inputs"),
        ({"inputs": [0]}, "inputs.0"),
        ({"reservation": 99999}, "reservation"),
        ({"max_hops": 2}, "max_hops"),
        ({"model": 99999}, "model"),
        ({"model": None}, "model"),  # from free capacity a unit needs its model
        ({"auto_replace": "maybe"}, "auto_replace"),
    ],
)
def test_bad_units_are_400s_naming_the_field(fleet, fab, changes, field):
    response = fleet.client("alpha_admin").post(UNITS, unit_body(fab, **changes), format="json")
    body = assert_error_body(response, 400)
    assert field in [e["field"] for e in body["errors"]], body
    assert not WorkloadUnit.objects.exists()


def test_an_unplaceable_unit_is_a_409_and_a_denied_one_a_403(fleet, fab):
    admin = fleet.client("alpha_admin")
    refused = assert_error_body(admin.post(UNITS, unit_body(fab, size=4), format="json"), 409)
    assert (refused["code"], refused["errors"][0]["field"]) == ("same_node", "constraint")
    denied = assert_error_body(
        admin.post(UNITS, unit_body(fab, inputs=[424242]), format="json"), 403
    )
    assert denied["code"] == "sovereignty_denied"
    assert not WorkloadUnit.objects.exists()


def test_a_unit_inside_a_reservation_and_the_capacity_counts(fleet, fab):
    admin = fleet.client("alpha_admin")
    block = admin.post(RESERVATIONS, reservation_body(fab), format="json").json()
    later = admin.post(
        RESERVATIONS,
        reservation_body(fab, count=2, starts_at=hours(2).isoformat()),
        format="json",
    ).json()
    assert later["state"] == "scheduled"
    unit = admin.post(UNITS, unit_body(fab, size=2, reservation=block["id"]), format="json").json()
    assert {m["serial"] for m in unit["members"]} <= set(block["servers"])
    assert (unit["model"], unit["auto_replace"]) == (fab.model.pk, False)
    # Another model inside the reservation: a 400 naming it, nothing written.
    from factory.catalog.models import UltraServerModel

    other = UltraServerModel.objects.exclude(pk=fab.model.pk).first()
    mismatch = assert_error_body(
        admin.post(
            UNITS,
            unit_body(fab, name="odd", size=1, reservation=block["id"], model=other.pk),
            format="json",
        ),
        400,
    )
    assert (mismatch["code"], mismatch["errors"][0]["field"]) == ("model_mismatch", "model")

    capacity = fleet.client("alpha_viewer").get(f"/api/v1/sites/{fab.site.pk}/capacity/")
    assert capacity.status_code == 200, capacity.content
    assert_conforms(capacity)
    assert (capacity.json()["reserved"], capacity.json()["in_units"]) == (3, 2)  # not later's
    assert capacity.json()["reserved_scheduled"] == 2  # later's: held from now on already
    listed = fleet.client("alpha_viewer").get("/api/v1/capacity/sites/")
    assert listed.status_code == 200, listed.content
    mine = next(s for s in listed.json()["results"] if s["site"] == fab.site.pk)
    assert (mine["reserved"], mine["reserved_scheduled"], mine["in_units"]) == (3, 2, 2)


def test_admin_shows_them_and_cancels_through_the_service(fleet, fab, client):
    admin = fleet.client("alpha_admin")
    block = admin.post(RESERVATIONS, reservation_body(fab), format="json").json()
    unit = admin.post(UNITS, unit_body(fab, name="other"), format="json").json()
    padmin = fleet.people["provider_admin"]
    padmin.is_superuser = True  # Django's own model permissions, as the demo's admin has
    padmin.save(update_fields=["is_superuser"])
    client.force_login(padmin)
    for url in (
        "/admin/placement/capacityreservation/",
        f"/admin/placement/capacityreservation/{block['id']}/change/",
        "/admin/placement/workloadunit/",
        f"/admin/placement/workloadunit/{unit['id']}/change/",
    ):
        assert client.get(url).status_code == 200, url
    response = client.post(
        "/admin/placement/capacityreservation/",
        {"action": "cancel_reservations", "_selected_action": [block["id"]]},
    )
    assert response.status_code == 302
    assert CapacityReservation.objects.get(pk=block["id"]).state == "cancelled"
