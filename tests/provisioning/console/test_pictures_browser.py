"""The console's pictures in a real browser (issue 17): Playwright driving Debian's Chromium
against a live server with the demo fleet, a day of roll-ups and fresh samples. Walks fleet →
site → rack (elevation) → UltraServer (heatmap in trays, charts), picks the 24 h range (a
fragment swap, not a reload) and takes screenshots into test-artifacts/console/; with
``UPDATE_SCREENSHOTS=1`` it also writes the README's images into docs/screenshots/."""

from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path

import pytest

from factory.inventory.demo import DEMO_PASSWORD, load_demo_fleet
from factory.inventory.models import PowerFeed, Site, UltraServer
from factory.telemetry.models import ServerRollup
from factory.wire import pdu_source
from tests.support.browser import ARTIFACTS, chromium
from tests.support.telemetry import agent_client, feed, pdu_report, post, server_report

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
ROOT = Path(__file__).resolve().parents[3]
README_SHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture
def fleet(live_server):
    load_demo_fleet()
    fra = Site.objects.get(code="FRA1")
    client, _ = agent_client(fra)
    now = dt.datetime.now(dt.UTC)
    servers = list(UltraServer.objects.filter(rack__site=fra).select_related("rack"))
    for n, server in enumerate(servers):
        temps = [58.0 + 14 * math.sin(c / 9) ** 2 + (c % 5) for c in range(144)]
        health = [0] * 144
        if n == 1:
            health[17] = 2  # one failed chip
        for i in range(3):
            report = server_report(
                server.serial,
                i + 1,
                now - dt.timedelta(seconds=30 - 10 * i),
                temp_c=temps,
                health=health,
            )
            post(client, [report])
        # A day of 1-minute roll-ups with a gap (the agent was away for 20 minutes).
        start = (now - dt.timedelta(hours=24)).replace(second=0, microsecond=0)
        rows = []
        for m in range(24 * 60):
            if 600 <= m < 620:
                continue
            load = 0.55 + 0.3 * math.sin(m / 180)
            rows.append(
                ServerRollup(
                    ultraserver=server,
                    resolution="1m",
                    bucket=start + dt.timedelta(minutes=m),
                    samples=6,
                    power_avg_w=60_000 + 90_000 * load,
                    power_max_w=62_000 + 90_000 * load,
                    temp_avg_c=48 + 12 * load,
                    temp_max_c=60 + 15 * load,
                    utilization_avg=load,
                )
            )
        ServerRollup.objects.bulk_create(rows)
    for rack_id in {s.rack_id for s in servers}:
        feeds = {f.name: feed(52_000.0) for f in PowerFeed.objects.filter(rack_id=rack_id)}
        name = next(s.rack.name for s in servers if s.rack_id == rack_id)
        post(client, [pdu_report(pdu_source(name), 1, feeds)])
    return {"fra": fra, "server": servers[1], "url": live_server.url}


@pytest.fixture
def browser(fleet):
    """Per test, after the database is set up (tests.support.browser)."""
    with chromium() as browser:
        yield browser


def shoot(page, name: str, readme: bool = False) -> None:
    """Into the artifacts always; into docs/screenshots when asked (UPDATE_SCREENSHOTS=1)."""
    page.screenshot(path=str(ARTIFACTS / f"pictures-{name}.png"), full_page=True)
    if readme and os.environ.get("UPDATE_SCREENSHOTS") == "1":
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(README_SHOTS / f"{name}.png"), full_page=True)


def test_fleet_site_rack_and_ultraserver_pictures(fleet, browser):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    base, server = fleet["url"], fleet["server"]
    page.goto(f"{base}/console/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", DEMO_PASSWORD)
    page.press("#id_password", "Enter")
    page.wait_for_url(f"{base}/console/")
    shoot(page, "fleet", readme=True)

    page.goto(f"{base}/console/sites/{fleet['fra'].pk}/")
    shoot(page, "site")

    page.goto(f"{base}/console/racks/{server.rack_id}/")
    slot = page.locator(f'.elevation [data-serial="{server.serial}"]')
    assert slot.get_attribute("data-height") == "42"
    box = slot.bounding_box()
    empty = page.locator(".elevation .slot.empty").first.bounding_box()
    assert box["height"] > 20 * empty["height"]  # drawn at its height in U
    assert "kW rated" in slot.inner_text()
    shoot(page, "rack")

    page.goto(f"{base}/console/ultraservers/{server.pk}/?color=temp")
    assert page.locator(".heatgrid tbody tr").count() == 36
    assert page.locator(".heatgrid tbody tr").first.locator("td").count() == 4
    page.evaluate("window.notReloaded = true")
    page.locator("#charts a", has_text="24h").click()
    page.wait_for_function("document.querySelector('#charts .switch a.on')?.innerText === '24h'")
    assert page.evaluate("window.notReloaded") is True  # a fragment swap, not a page load
    charts = page.locator("#charts").inner_text()
    assert "1-minute averages" in charts and "gap" in charts
    assert page.locator("#charts svg .y-axis text").count() >= 6
    shoot(page, "ultraserver", readme=True)
    context.close()
