"""Placing, moving and shrinking: refused with a message that names the budget and numbers, and
nothing written. Checked through the API (what operators see) and under concurrency."""

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from factory.catalog.models import UltraServerModel
from factory.inventory.models import Chip, PowerFeed, UltraServer
from tenants.models import AuditEvent
from tests.support.fleet import client_for, make_rack, make_server, make_site

TRN3_MAX_KW = 187.8  # 144 × 1.2 kW + 15 kW


def trn3_id():
    return UltraServerModel.objects.get(slug="trn3-ultraserver").pk


def place(client, serial, rack, position=1, model=None):
    return client.post(
        "/api/v1/ultraservers/",
        {
            "serial": serial,
            "model": model or trn3_id(),
            "rack": rack.pk,
            "position": position,
        },
    )


def errors_by_code(response):
    return {e["code"]: e for e in response.json()["errors"]}


def assert_nothing_written(before_servers, before_chips, before_events):
    assert UltraServer.objects.count() == before_servers
    assert Chip.objects.count() == before_chips
    assert AuditEvent.objects.count() == before_events


@pytest.fixture
def counts(db):
    return lambda: (UltraServer.objects.count(), Chip.objects.count(), AuditEvent.objects.count())


def test_creating_an_ultraserver_creates_its_chips(fleet):
    client = fleet.client("provider_admin")
    site = make_site(fleet.alpha, "NEW1")
    rack = make_rack(site, "NEW1-R01")
    response = place(client, "NEW-TRN3", rack)
    assert response.status_code == 201, response.content
    server = UltraServer.objects.get(serial="NEW-TRN3")
    assert list(server.chips.values_list("index", flat=True)) == list(range(144))
    assert server.chips.first().serial == "NEW-TRN3-C000"


def test_power_budget_refusal_names_rack_budget_committed_and_need(fleet, counts):
    client = fleet.client("provider_admin")
    site = make_site(fleet.alpha, "PWR1")
    # 400 V × 300 A × √3 × 0.8 × 0.95 = 158.0 kW per path; A+B protects one path.
    rack = make_rack(site, "PWR1-R03", amperage=300, cooling_kw="500")
    before = counts()
    response = place(client, "TOO-BIG", rack)
    assert response.status_code == 400
    error = errors_by_code(response)["rack_power_budget_exceeded"]
    assert error["field"] == "rack"
    assert error["message"] == (
        "rack PWR1-R03 power budget 158.0 kW, committed 0.0 kW, Trn3 UltraServer needs 187.8 kW"
    )
    assert_nothing_written(*before)


def test_second_server_refused_when_rack_budget_is_committed(fleet, counts):
    client = fleet.client("provider_admin")
    rack = fleet.racks["alpha"]  # 210.6 kW protected, one Trn3 (187.8 kW) already at U1
    before = counts()
    response = place(
        client,
        "SECOND",
        rack,
        position=43,
        model=UltraServerModel.objects.get(slug="gb300-nvl72").pk,
    )
    codes = errors_by_code(response)
    assert response.status_code == 400
    assert "position_outside_rack" in codes  # 42U at U43 of a 48U rack
    assert codes["rack_power_budget_exceeded"]["message"] == (
        "rack ALP1-R01 power budget 210.6 kW, committed 187.8 kW, GB300 NVL72 needs 120.8 kW"
    )
    assert_nothing_written(*before)


def test_position_taken_and_outside_rack(fleet, counts):
    client = fleet.client("provider_admin")
    site = make_site(fleet.alpha, "POS1")
    rack = make_rack(site, "POS1-R01", cooling="air", cooling_kw="500", amperage=800)
    trn2 = UltraServerModel.objects.get(slug="trn2-ultraserver").pk
    assert place(client, "T2-A", rack, position=1, model=trn2).status_code == 201
    before = counts()
    taken = place(client, "T2-B", rack, position=10, model=trn2)
    assert (
        errors_by_code(taken)["position_taken"]["message"]
        == "rack POS1-R01 U1–U20 is taken by T2-A"
    )
    outside = place(client, "T2-C", rack, position=30, model=trn2)
    assert errors_by_code(outside)["position_outside_rack"]["message"] == (
        "Trn2 UltraServer at U30 needs U30–U49; rack POS1-R01 has 48U"
    )
    assert_nothing_written(*before)
    assert place(client, "T2-D", rack, position=21, model=trn2).status_code == 201


def test_cooling_capacity_and_type(fleet, counts):
    client = fleet.client("provider_admin")
    site = make_site(fleet.alpha, "COOL1")
    weak = make_rack(site, "COOL1-R01", cooling_kw="150")
    air = make_rack(site, "COOL1-R02", cooling="air", cooling_kw="500")
    before = counts()
    assert errors_by_code(place(client, "C1", weak))["rack_cooling_capacity_exceeded"][
        "message"
    ] == (
        "rack COOL1-R01 cooling capacity 150.0 kW, committed 0.0 kW, "
        "Trn3 UltraServer needs 187.8 kW"
    )
    assert "cooling_type_mismatch" in errors_by_code(place(client, "C2", air))
    assert_nothing_written(*before)


def test_site_contracted_power(fleet, counts):
    client = fleet.client("provider_admin")
    site = make_site(fleet.alpha, "SITE1", power_kw="300", cooling_kw="1000")
    make_server("S1", rack=make_rack(site, "SITE1-R01"))
    second_rack = make_rack(site, "SITE1-R02")
    before = counts()
    response = place(client, "S2", second_rack)
    assert errors_by_code(response)["site_contracted_power_exceeded"]["message"] == (
        "site SITE1 contracted power 300.0 kW, committed 187.8 kW, Trn3 UltraServer needs 187.8 kW"
    )
    assert_nothing_written(*before)


def test_move_is_checked_against_the_destination(fleet):
    client = fleet.client("provider_admin")
    site = make_site(fleet.alpha, "MOV1")
    small = make_rack(site, "MOV1-R01", amperage=300)
    server = fleet.servers["alpha"]
    response = client.patch(f"/api/v1/ultraservers/{server.pk}/", {"rack": small.pk, "position": 1})
    assert "rack_power_budget_exceeded" in errors_by_code(response)
    server.refresh_from_db()
    assert server.rack_id == fleet.racks["alpha"].pk
    big = make_rack(site, "MOV1-R02")
    moved = client.patch(f"/api/v1/ultraservers/{server.pk}/", {"rack": big.pk, "position": 1})
    assert moved.status_code == 200, moved.content
    assert moved.json()["rack_name"] == "MOV1-R02"


def test_allocation_must_match_the_premises(fleet):
    client = fleet.client("provider_admin")
    response = client.patch(
        f"/api/v1/ultraservers/{fleet.servers['alpha'].pk}/", {"tenant": fleet.beta.pk}
    )
    assert errors_by_code(response)["allocation_outside_premises"]["field"] == "tenant"


def test_model_cannot_change(fleet):
    client = fleet.client("provider_admin")
    trn2 = UltraServerModel.objects.get(slug="trn2-ultraserver").pk
    server = make_server("UNPLACED", tenant=fleet.alpha)
    response = client.patch(f"/api/v1/ultraservers/{server.pk}/", {"model": trn2})
    assert errors_by_code(response)["model_immutable"]["field"] == "model"


def test_shrinking_budgets_below_commitments_is_refused(fleet):
    client = fleet.client("alpha_operator")  # the customer keeps its racks and feeds
    rack = fleet.racks["alpha"]
    feed_a = rack.power_feeds.get(path="A")
    shrink = client.patch(f"/api/v1/power-feeds/{feed_a.pk}/", {"amperage": 300})
    assert errors_by_code(shrink)["rack_power_budget_exceeded"]["message"] == (
        "rack ALP1-R01 power budget would drop to 158.0 kW, below the committed 187.8 kW"
    )
    feed_a.refresh_from_db()
    assert feed_a.amperage == 400
    delete = client.delete(f"/api/v1/power-feeds/{feed_a.pk}/")
    assert delete.status_code == 409
    assert delete.json()["errors"][0] == {
        "field": "rack",
        "code": "rack_redundancy_lost",
        "message": "rack ALP1-R01 would lose its A+B redundancy while it carries 187.8 kW",
    }
    assert PowerFeed.objects.filter(pk=feed_a.pk).exists()
    # Re-pathing the only A feed to B would also drop redundancy (and double the "budget").
    repath = client.patch(f"/api/v1/power-feeds/{feed_a.pk}/", {"path": "B"})
    assert "rack_redundancy_lost" in errors_by_code(repath)
    # With a second A feed in place, the first may go.
    client.post(
        "/api/v1/power-feeds/",
        {
            "rack": rack.pk,
            "name": "ALP1-R01-A2",
            "path": "A",
            "voltage": 400,
            "amperage": 400,
            "phase": "three",
        },
    )
    assert client.delete(f"/api/v1/power-feeds/{feed_a.pk}/").status_code == 204
    cooling = client.patch(f"/api/v1/racks/{rack.pk}/", {"cooling_capacity_kw": 100})
    assert "rack_cooling_capacity_exceeded" in errors_by_code(cooling)
    site = fleet.client("provider_admin").patch(
        f"/api/v1/sites/{rack.site_id}/", {"contracted_power_kw": 100}
    )
    assert "site_contracted_power_exceeded" in errors_by_code(site)
    # Deleting a rack that still holds servers and feeds is a conflict, not a cascade.
    conflict = fleet.client("provider_admin").delete(f"/api/v1/racks/{rack.pk}/")
    assert conflict.status_code == 409 and conflict.json()["errors"][0]["code"] == "protected"


def test_capacity_summaries(fleet):
    client = fleet.client("alpha_viewer")
    rack = client.get(f"/api/v1/racks/{fleet.racks['alpha'].pk}/capacity/").json()
    assert rack["power"] == {
        "budget_kw": 210.617,
        "committed_kw": TRN3_MAX_KW,
        "available_kw": 22.817,
        "redundant": True,
        "paths_kw": {"A": 210.617, "B": 210.617},
    }
    assert rack["chips"]["total"] == 144 and rack["fp8_dense_pflops"] == 362.88
    assert rack["hbm_tb"] == 20.736
    site = client.get(f"/api/v1/sites/{fleet.sites['alpha'].pk}/capacity/").json()
    assert site["power"]["contracted_kw"] == 2000.0 and site["power"]["committed_kw"] == TRN3_MAX_KW
    listed = client.get("/api/v1/capacity/sites/").json()["results"]
    assert [s["code"] for s in listed] == ["ALP1"]
    assert client.get(f"/api/v1/sites/{fleet.sites['beta'].pk}/capacity/").status_code == 404


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_placements_into_one_slot_exactly_one_wins():
    """Two admins race for a rack whose feeds carry one Trn2 UltraServer (44.4 kW), not two.
    Free positions for both: only the power budget decides, and row locks make one win."""
    from tests.support.fleet import build_fleet

    fleet = build_fleet()
    site = make_site(fleet.alpha, "RACE1")
    # 400 V × 95 A × √3 × 0.8 × 0.95 = 50.0 kW per path
    rack = make_rack(site, "RACE1-R01", cooling="air", cooling_kw="1000", amperage=95)
    trn2 = UltraServerModel.objects.get(slug="trn2-ultraserver").pk
    clients = [client_for(fleet.people["provider_admin"]) for _ in range(2)]
    barrier = threading.Barrier(2)
    results = []

    def attempt(index):
        try:
            barrier.wait()
            # Different positions: only the power budget can stop the second one.
            response = place(
                clients[index], f"RACE-{index}", rack, position=1 + 20 * index, model=trn2
            )
            results.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201, 400]
    assert UltraServer.objects.filter(rack=rack).count() == 1


def test_unauthenticated_placement_is_401_and_writes_nothing(fleet, counts):
    before = counts()
    response = APIClient().post("/api/v1/ultraservers/", {"serial": "X", "model": trn3_id()})
    assert response.status_code == 401
    assert_nothing_written(*before)
