"""Pictures that tell the truth (issue 17): the chip heatmap in the model's tray layout with a
continuous scale and "no data" cells, the rack elevation with measured against rated power,
and the time-range picker reading the right resolution; with Django's test client."""

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from factory.inventory.demo import load_demo_fleet
from factory.inventory.models import PowerFeed, Rack, Site, UltraServer
from factory.telemetry.models import ServerRollup, ServerSample
from factory.telemetry.services import roll_up
from tenants.access import SYSTEM
from tenants.choices import AuditSource
from tenants.services.changes import ChangeContext, save_object
from tests.support.telemetry import agent_client, post, server_report

CTX = ChangeContext(SYSTEM, AuditSource.SYSTEM)
HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def demo(db, client):
    load_demo_fleet()
    client.force_login(get_user_model().objects.get(username="admin"))
    return {s.code: s for s in Site.objects.all()}


def server_of(site: Site, family: str) -> UltraServer:
    return UltraServer.objects.filter(rack__site=site, model__slug__startswith=family).first()


def tray_rows(html: str) -> list[list[str]]:
    """Per tray row of the heatmap, its cells' chip indexes."""
    body = html.split('<table class="heatgrid"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr data-tray="(\d+)">(.*?)</tr>', body, re.S)
    return [re.findall(r'data-chip="(\d+)"', cells) for _, cells in rows]


def test_a_trn3_heatmap_is_36_trays_of_4_chips(client, demo):
    server = server_of(demo["FRA1"], "trn3")
    html = client.get(f"/console/ultraservers/{server.pk}/").content.decode()
    rows = tray_rows(html)
    assert len(rows) == 36 and all(len(r) == 4 for r in rows)
    assert rows[0] == ["0", "1", "2", "3"] and rows[35] == ["140", "141", "142", "143"]
    assert '<th scope="row">35</th>' in html  # tray numbers labelled
    assert 'data-trays="36" data-per-tray="4"' in html


def test_an_nvl72_heatmap_is_18_trays_of_4_gpus(client, demo):
    server = server_of(demo["IAD1"], "gb300")
    html = client.get(f"/console/ultraservers/{server.pk}/?color=temp").content.decode()
    rows = tray_rows(html)
    assert len(rows) == 18 and all(len(r) == 4 for r in rows)
    assert server.model.trays == 18 and server.model.chips_per_tray == 4


def test_chips_without_a_value_are_no_data_never_a_number(client, demo):
    server = server_of(demo["FRA1"], "trn3")
    html = client.get(f"/console/ultraservers/{server.pk}/?color=temp", **HX).content.decode()
    assert html.count('class="cell nodata"') == 144 + 1  # every chip, plus the legend's
    grid = html.split("</table>", 1)[0]
    assert "°</span>" not in grid and 'style="background:#' not in grid
    assert grid.count('<span class="v">no data</span>') == 144
    assert "144 chips without a value" in html
    assert "<svg" not in html and "heatgrid" in html  # the 10-second refresh: the heatmap only


def test_measured_values_get_a_continuous_colour_and_a_legend(client, demo):
    server = server_of(demo["FRA1"], "trn3")
    agent, _ = agent_client(demo["FRA1"])
    temps = [40.0 + i * 0.35 for i in range(144)]
    post(agent, [server_report(server.serial, 1, temp_c=temps)])
    html = client.get(f"/console/ultraservers/{server.pk}/?color=temp", **HX).content.decode()
    colours = re.findall(r'class="cell scaled" style="background:(#[0-9a-f]{6})', html)
    assert len(colours) == 144 and len(set(colours)) > 20  # per value, not three buckets
    assert "nodata" in html.split('<p class="legend">')[1]  # the legend names no-data too
    assert "25 °C" in html and "95 °C" in html  # the scale's min and max, with units
    assert ">40°<" in html


def test_the_rack_elevation_draws_servers_at_their_position_with_power(client, demo):
    server = server_of(demo["FRA1"], "trn3")
    agent, _ = agent_client(demo["FRA1"])
    post(agent, [server_report(server.serial, 1)])  # 144 × 800 W = 115.2 kW
    html = client.get(f"/console/racks/{server.rack_id}/").content.decode()
    assert f'data-serial="{server.serial}" data-top="42" data-bottom="1" data-height="42"' in html
    assert html.count('class="slot empty"') == 48 - 42
    assert "115.2 kW of 187.8 kW rated" in html  # measured against 144 × 1.2 kW + 15 kW
    assert "In service" in html and "✓ healthy" in html
    assert "FRA1-R01-A1" in html and "FRA1-R01-B1" in html  # the rack's feeds


def test_two_servers_in_one_rack_stack_and_maintenance_shows(client, demo):
    rack = Rack.objects.get(name="IAD1-R03")
    low, high = UltraServer.objects.filter(rack=rack).order_by("position")
    UltraServer.objects.filter(pk=high.pk).update(in_maintenance=True)
    html = client.get(f"/console/racks/{rack.pk}/").content.decode()
    assert f'data-serial="{low.serial}" data-top="20" data-bottom="1"' in html
    assert f'data-serial="{high.serial}" data-top="40" data-bottom="21"' in html
    assert html.index(high.serial) < html.index(low.serial)  # top of the rack first
    assert "⚠ maintenance" in html and "no reading" in html
    assert html.count('class="slot empty"') == 8


def test_rack_page_queries_are_few_and_flat_in_the_sites_racks(client, demo):
    server = server_of(demo["FRA1"], "trn3")
    url = f"/console/racks/{server.rack_id}/"
    with CaptureQueriesContext(connection) as before:
        assert client.get(url).status_code == 200
    for n in range(20):
        rack = save_object(
            Rack(
                site=demo["FRA1"],
                name=f"FRA1-X{n:02d}",
                cooling_type="liquid",
                cooling_capacity_kw=Decimal("100"),
            ),
            CTX,
        )
        save_object(
            PowerFeed(
                rack=rack, name=f"{rack.name}-A1", path="A", voltage=400, amperage=Decimal(100)
            ),
            CTX,
        )
    with CaptureQueriesContext(connection) as after:
        client.get(url)
    assert len(after) == len(before) <= 20


def samples(client, demo, server, minutes: int = 8) -> None:
    agent, _ = agent_client(demo["FRA1"])
    now = dt.datetime.now(dt.UTC)
    reports = [
        server_report(server.serial, i + 1, ts=now - dt.timedelta(seconds=30 * (2 * minutes - i)))
        for i in range(2 * minutes)
    ]
    assert post(agent, reports).status_code in (200, 201, 202)


@pytest.mark.parametrize(
    ("name", "label", "rows"),
    [
        ("1h", "raw samples", lambda s: ServerSample.objects.filter(ultraserver=s).count()),
        (
            "24h",
            "1-minute averages",
            lambda s: ServerRollup.objects.filter(ultraserver=s, resolution="1m").count(),
        ),
        (
            "7d",
            "1-hour averages",
            lambda s: ServerRollup.objects.filter(ultraserver=s, resolution="1h").count(),
        ),
    ],
)
def test_the_time_range_reads_its_resolution_as_a_fragment(client, demo, name, label, rows):
    server = server_of(demo["FRA1"], "trn3")
    samples(client, demo, server)
    roll_up()
    ServerRollup.objects.create(  # three days ago: only the 7-day range reaches it
        ultraserver=server,
        resolution="1h",
        bucket=dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        - dt.timedelta(days=3),
        samples=360,
        power_avg_w=100_000.0,
        temp_max_c=70.0,
        temp_avg_c=60.0,
    )
    response = client.get(
        f"/console/ultraservers/{server.pk}/?range={name}", HTTP_HX_TARGET="charts", **HX
    )
    html = response.content.decode()
    count = rows(server)
    assert count >= 2
    assert f"{label} · {count} points" in html
    assert 'class="on">' + name + "</a>" in html.replace('aria-current="true" ', "")
    assert "heatgrid" not in html and "<html" not in html  # the charts only: a fragment
    assert ("<polyline" in html or "<circle" in html) and ">kW</text>" in html
    assert ">°C</text>" in html
    assert "hottest chip" in html and "chip average" in html  # the legend


def test_a_flat_temperature_draws_flat_on_the_page(client, demo):
    server = server_of(demo["FRA1"], "trn3")
    samples(client, demo, server)  # every chip at 65 °C the whole time
    html = client.get(
        f"/console/ultraservers/{server.pk}/?range=1h", HTTP_HX_TARGET="charts", **HX
    ).content.decode()
    hottest = html.split('data-series="hottest chip">', 1)[1].split("</g>", 1)[0]
    ys = {p.split(",")[1] for p in re.findall(r"[\d.]+,[\d.]+", hottest)}
    assert len(ys) == 1
    labels = re.findall(r'<text x="46" y="[\d.]+" text-anchor="end"[^>]*>([\d.]+)</text>', html)
    temps = [float(v) for v in labels if 40 <= float(v) <= 90]
    assert temps and max(temps) - min(temps) >= 10  # a span of at least 10 °C


def test_the_raw_range_keeps_the_newest_samples_when_there_are_more_than_it_reads(
    fleet, monkeypatch
):
    """Past the cap, the chart is the latest samples in time order (the right of the chart
    is now), not the oldest ones with the newest dropped."""
    from provisioning.console import selectors

    server = UltraServer.objects.select_related("model").get(pk=fleet.servers["alpha"].pk)
    now = dt.datetime.now(dt.UTC)
    ServerSample.objects.bulk_create(
        ServerSample(
            ultraserver=server,
            ts=now - dt.timedelta(minutes=10 - i),
            chips=144,
            power_total_w=100_000.0 + i,
            temp_max_c=50.0 + i,
            temp_avg_c=40.0,
        )
        for i in range(10)
    )
    monkeypatch.setattr(selectors, "RAW_POINTS", 4)
    data = selectors.server_charts(server, "1h", now=now)
    assert data["points"] == 4
    hottest = data["temp_chart"].series[0]
    assert hottest.name == "hottest chip"
    assert (hottest.low, hottest.high, hottest.last) == (56.0, 59.0, 59.0)


def test_the_ultraserver_page_costs_the_same_queries_for_144_chips_as_for_72(client, demo):
    """No query per chip (issue 18: a deferred field read per chip made it 157 for a Trn3)."""
    counts = {}
    for family, site in (("trn3", "FRA1"), ("gb300", "IAD1")):
        server = server_of(demo[site], family)
        client.get(f"/console/ultraservers/{server.pk}/")  # warm caches (session, content types)
        with CaptureQueriesContext(connection) as page:
            assert client.get(f"/console/ultraservers/{server.pk}/").status_code == 200
        counts[server.chips.count()] = len(page)
    assert set(counts) == {144, 72}
    assert counts[144] == counts[72], counts
    assert counts[144] <= 15, counts  # 13 when written (157 for a Trn3 before)
