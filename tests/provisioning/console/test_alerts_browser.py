"""An SRE has the Faults & alerts page open in a real browser (Playwright driving Debian's
Chromium, headless, against a live server with the demo fleet). A new critical fault opens
through the real ingest path; it appears on the page, and on the header badge, within one
refresh of their fragments, without a reload; the SRE acknowledges it with a note from its row,
and the audit event with the note is there. Screenshots: test-artifacts/console/alerts-*.png."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from factory.inventory.demo import DEMO_PASSWORD, load_demo_fleet
from factory.inventory.models import Site, UltraServer
from factory.telemetry.models import Fault
from factory.wire import FaultRule
from provisioning.console.alerts import REFRESH_SECONDS
from tenants.models import AuditEvent
from tests.support.browser import ARTIFACTS, chromium
from tests.support.telemetry import agent_client, post, server_report

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def demo(live_server):
    load_demo_fleet()
    fra = Site.objects.get(code="FRA1")
    server = UltraServer.objects.filter(rack__site=fra).order_by("pk").first()
    assert server is not None
    client, _ = agent_client(fra)
    now = dt.datetime.now(dt.UTC)
    assert post(client, [server_report(server.serial, 1, now - dt.timedelta(seconds=10))])
    return {"url": live_server.url, "server": server, "agent": client}


@pytest.fixture
def browser(demo):
    """Per test, after the database is set up (tests.support.browser)."""
    with chromium() as browser:
        yield browser


def test_an_sre_sees_a_new_critical_fault_appear_and_acknowledges_it(demo, browser):
    server = demo["server"]
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.goto(f"{demo['url']}/console/login/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name=re.compile("log in", re.I)).click()
    page.wait_for_url(re.compile(r".*/console/$"))
    fra = page.locator("table.grid tr", has_text="FRA1")
    assert "Agent:" in fra.inner_text() and "stale" not in fra.inner_text()
    page.screenshot(path=str(ARTIFACTS / "alerts-00-fleet-freshness.png"), full_page=True)
    page.locator("#fault-badge").click()  # the badge leads to the page
    page.wait_for_url(re.compile(r".*/console/alerts/$"))
    assert "Nothing needs attention." in page.locator("#alerts").inner_text()
    page.evaluate("window.__notReloaded = true")
    page.screenshot(path=str(ARTIFACTS / "alerts-01-quiet.png"), full_page=True)

    # A critical fault opens the way it does in production: an agent's batch, the ECC rule.
    ecc = [0] * 144
    ecc[7] = 4
    reply = post(demo["agent"], [server_report(server.serial, 2, ecc_uncorrected=ecc)])
    assert reply.status_code == 200 and reply.json()["faults_opened"] == 1, reply.content
    fault = Fault.objects.get(ultraserver=server, rule=FaultRule.ECC_UNCORRECTABLE)
    row = page.locator(f"#fault-{fault.pk}")
    row.wait_for(timeout=(REFRESH_SECONDS * 2 + 2) * 1000)  # within one refresh (and a bit)
    assert page.evaluate("window.__notReloaded") is True  # a fragment came, not a new page
    text = row.inner_text()
    assert server.serial in text and "chip 7" in text and "not yet" in text
    assert row.locator(".sev").inner_text().strip().lower() == fault.severity
    page.locator("#fault-badge.critical").wait_for(timeout=12_000)  # its own refresh
    assert "1 critical" in page.locator("#fault-badge").inner_text()
    page.screenshot(path=str(ARTIFACTS / "alerts-02-new-critical.png"), full_page=True)

    row.get_by_text(f"Act on #{fault.pk}").click()
    row.get_by_label("Note").first.fill("Chip 7 HBM: swapping the board tonight")
    page.screenshot(path=str(ARTIFACTS / "alerts-03-acknowledging.png"), full_page=True)
    row.get_by_role("button", name="Acknowledge").click()
    page.wait_for_url(re.compile(r".*/console/alerts/$"))
    acked = page.locator(f"#fault-{fault.pk}")
    assert "Chip 7 HBM: swapping the board tonight" in acked.inner_text()
    assert "admin" in acked.inner_text()
    page.screenshot(path=str(ARTIFACTS / "alerts-04-acknowledged.png"), full_page=True)

    event = AuditEvent.objects.filter(
        object_type="telemetry.fault", object_id=str(fault.pk), actor_username="admin"
    ).latest("occurred_at")
    assert event.after["acknowledge_note"] == "Chip 7 HBM: swapping the board tonight"

    # The site page: the agent's last-seen and each server's newest sample and heartbeat.
    page.get_by_role("link", name="FRA1").first.click()
    page.wait_for_url(re.compile(r".*/console/sites/\d+/$"))
    fresh = page.locator("section.freshness")
    assert "Site agent last seen" in fresh.inner_text() and server.serial in fresh.inner_text()
    page.screenshot(path=str(ARTIFACTS / "alerts-05-site-freshness.png"), full_page=True)
    context.close()
