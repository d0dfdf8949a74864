"""The telemetry read API speaks the schema's language: chip health by name (as ``/chips/``
does), typed answers that validate against the published schema, and a series that says when it
was cut and where to go on."""

import datetime as dt

import pytest
from django.utils import timezone

from factory import wire
from factory.inventory.choices import ChipHealth
from factory.telemetry import services
from factory.telemetry.choices import Resolution
from factory.wire import HealthCode, Metric
from tests.support.schema import assert_conforms
from tests.support.telemetry import agent_client, feed, pdu_report, post, server_report
from tests.support.workflows import put_in_service


@pytest.fixture
def site(fleet):
    server = put_in_service(fleet.servers["alpha"])
    client, _ = agent_client(fleet.sites["alpha"])
    return client, server


def test_health_codes_of_the_wire_are_names_in_the_api(site, fleet):
    client, server = site
    codes = [int(HealthCode.OK)] * 144
    codes[1], codes[2], codes[3] = int(HealthCode.DEGRADED), -1, 9
    assert post(client, [server_report(server.serial, 1, health=codes)]).status_code == 200
    viewer = fleet.client("alpha_viewer")

    answer = viewer.get(f"/api/v1/ultraservers/{server.pk}/chip-health/")
    assert answer.status_code == 200
    assert_conforms(answer)
    chips = answer.json()["chips"]
    assert [c["reported_health"] for c in chips[:4]] == ["ok", "degraded", "unknown", "failed"]
    # `health` is the inventory's verdict, the same value and enum as /chips/ gives
    listed = viewer.get("/api/v1/chips/", {"ultraserver": server.pk, "limit": 1000}).json()
    by_index = {c["index"]: c["health"] for c in listed["results"]}
    assert {c["index"]: c["health"] for c in chips} == by_index
    assert set(by_index.values()) <= set(ChipHealth.values)
    assert not any(isinstance(c["health"], int) for c in chips)

    raw = viewer.get(f"/api/v1/ultraservers/{server.pk}/telemetry/", {"resolution": "raw"})
    assert_conforms(raw)
    assert raw.json()["points"][0]["chips"][Metric.HEALTH][:4] == [
        "ok",
        "degraded",
        "unknown",
        "failed",
    ]


def test_a_chip_without_readings_is_typed_too(site, fleet):
    _, server = site
    answer = fleet.client("alpha_viewer").get(f"/api/v1/ultraservers/{server.pk}/chip-health/")
    assert_conforms(answer)
    first = answer.json()["chips"][0]
    assert answer.json()["ts"] is None and first["reported_health"] is None
    assert first[Metric.POWER_W] is None


def _samples(client, server, n: int, every: int = 10) -> list[dt.datetime]:
    start = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=5)
    stamps = [start + dt.timedelta(seconds=every * i) for i in range(n)]
    reports = [server_report(server.serial, i + 1, ts) for i, ts in enumerate(stamps)]
    assert post(client, reports).status_code == 200
    return stamps


def test_a_cut_series_says_so_and_where_to_go_on(site, fleet):
    client, server = site
    stamps = _samples(client, server, 5)
    viewer = fleet.client("alpha_viewer")
    url = f"/api/v1/ultraservers/{server.pk}/telemetry/"
    query = {"resolution": "raw", "limit": 2, "start": stamps[0].isoformat()}
    seen, pages = [], 0
    while True:
        answer = viewer.get(url, query)
        assert answer.status_code == 200, answer.content
        assert_conforms(answer)
        body = answer.json()
        seen += [p["ts"] for p in body["points"]]
        pages += 1
        if not body["truncated"]:
            assert body["next_start"] is None
            break
        assert len(body["points"]) == body["limit"] == 2
        query["start"] = body["next_start"]
    assert pages == 3 and len(seen) == len(set(seen)) == 5  # nothing lost, nothing twice

    whole = viewer.get(url, {"resolution": "raw", "start": stamps[0].isoformat()}).json()
    assert (whole["truncated"], whole["limit"], len(whole["points"])) == (False, 10_000, 5)
    too_many = viewer.get(url, {"resolution": "raw", "limit": 10_001})
    assert too_many.status_code == 400
    assert too_many.json()["errors"][0]["field"] == "limit"


def test_roll_ups_are_cut_the_same_way(site):
    client, server = site
    stamps = _samples(client, server, 3, every=60)  # three minute buckets
    assert services.roll_up().minutes == 3
    start, end = stamps[0] - dt.timedelta(hours=1), timezone.now() + dt.timedelta(minutes=1)
    found = services.series(server, start, end, Resolution.MINUTE, limit=2)
    assert len(found.points) == 2 and found.truncated
    rest = services.series(server, found.next_start, end, Resolution.MINUTE, limit=2)
    assert len(rest.points) == 1 and not rest.truncated and rest.next_start is None
    assert services.series(server, start, end, Resolution.RAW, limit=50_000).limit == 10_000


def test_site_power_is_typed(site, fleet):
    client, _ = site
    rack = fleet.racks["alpha"]
    reply = post(client, [pdu_report(wire.pdu_source(rack.name), 1, {"A1": feed(61000.0)})])
    assert reply.status_code == 200, reply.content
    answer = fleet.client("alpha_viewer").get(f"/api/v1/sites/{rack.site_id}/power/")
    assert_conforms(answer)
    line = next(r for r in answer.json()["racks"] if r["rack"] == rack.pk)
    assert line["feeds"] == {"A1": {"power_w": 61000.0, "up": True}}


def test_capacity_answers_conform(fleet):
    viewer = fleet.client("alpha_viewer")
    site, rack = fleet.sites["alpha"], fleet.racks["alpha"]
    for url in (
        f"/api/v1/sites/{site.pk}/capacity/",
        f"/api/v1/racks/{rack.pk}/capacity/",
        "/api/v1/capacity/sites/",
    ):
        answer = viewer.get(url)
        assert answer.status_code == 200, (url, answer.content)
        assert_conforms(answer)
