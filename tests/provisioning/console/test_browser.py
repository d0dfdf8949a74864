"""The console in a real browser: Playwright driving Debian's Chromium, headless, against a
live server with the demo fleet; a real Celery worker and an agent move a rolling upgrade along
while the page watches. Screenshots of every page land in test-artifacts/console/."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from factory.agents import services as agents
from factory.inventory.demo import DEMO_PASSWORD, load_demo_fleet
from factory.inventory.models import Site, UltraServer
from provisioning import jobs
from provisioning.demo import load_demo_provisioning
from provisioning.models import MaintenanceWindow, Workflow
from tenants.sovereignty.models import AccessRequest, DecisionRecord, SovereigntyRule
from tests.support.browser import ARTIFACTS, chromium
from tests.support.hardware import SimHardware
from tests.support.harness import answer_commands
from tests.support.processes import app_env, worker_process
from tests.support.telemetry import CTX, agent_client, post, server_report

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def browser(demo):
    """Per test, after the database is set up (tests.support.browser)."""
    with chromium() as browser:
        yield browser


@pytest.fixture
def demo(live_server):
    load_demo_fleet()
    load_demo_provisioning()
    fra = Site.objects.get(code="FRA1")
    # Some telemetry, so the heatmap and charts have something to show.
    client, _ = agent_client(fra)
    now = dt.datetime.now(dt.UTC)
    for server in UltraServer.objects.filter(rack__site=fra):
        for i in range(3):
            health = [0] * 144
            if i == 2 and server.position == 1 and server.rack.name.endswith("R02"):
                health[17] = 2
            post(
                client,
                [
                    server_report(
                        server.serial,
                        i + 1,
                        now - dt.timedelta(seconds=30 - 10 * i),
                        temp_c=[60.0 + (c % 30) for c in range(144)],
                        health=health,
                    )
                ],
            )
    return {"fra": fra, "iad": Site.objects.get(code="IAD1"), "url": live_server.url}


class Page:
    """One person's browser tab; records every host it talks to."""

    def __init__(self, browser, base: str, who: str):
        self.context = browser.new_context(viewport={"width": 1366, "height": 768})
        self.page = self.context.new_page()
        self.base, self.who = base, who
        self.hosts: set[str] = set()
        self.page.on("request", lambda r: self.hosts.add(urlsplit(r.url).netloc))
        self.shots = 0

    def shot(self, name: str) -> None:
        self.shots += 1
        self.page.screenshot(
            path=str(ARTIFACTS / f"{self.who}-{self.shots:02d}-{name}.png"), full_page=True
        )

    def login_with_keyboard(self, username: str) -> None:
        self.page.goto(f"{self.base}/console/")
        assert "/console/login/" in self.page.url
        # The username field takes the focus by itself; the keyboard does the rest.
        self.page.wait_for_function("document.activeElement?.id === 'id_username'")
        self.page.keyboard.type(username)
        self.page.keyboard.press("Tab")
        self.page.keyboard.type(DEMO_PASSWORD)
        self.page.keyboard.press("Enter")
        self.page.wait_for_url(lambda url: urlsplit(url).path == "/console/")

    def tab_to(self, text: str, limit: int = 80) -> None:
        """Move focus with Tab until it reaches the link or button saying ``text``; Enter."""
        for _ in range(limit):
            self.page.keyboard.press("Tab")
            if self.page.evaluate("document.activeElement.innerText.trim()") == text:
                self.page.keyboard.press("Enter")
                return
        raise AssertionError(f"could not reach {text!r} with the keyboard")

    def only_talked_to(self, base: str) -> None:
        assert self.hosts == {urlsplit(base).netloc}, self.hosts

    def close(self):
        self.context.close()


class AnsweringAgent(threading.Thread):
    """The site's agent for the upgrade (instant simulated hardware), plus beat's reconciler."""

    def __init__(self, site):
        super().__init__(daemon=True)
        self.agent, _ = agents.issue_agent(site, "browser-test-agent", CTX)
        self.hw = SimHardware()
        self.halt = threading.Event()

    def run(self):
        try:
            while not self.halt.is_set():
                answer_commands(self.agent, self.hw)
                jobs.reconcile()
                time.sleep(0.3)
        finally:
            connection.close()


def test_provider_admin_goes_fleet_site_rack_ultraserver_and_runs_an_upgrade(
    demo, browser, tmp_path
):
    fra = demo["fra"]
    MaintenanceWindow.objects.create(
        site=fra,
        name="Test: always",
        weekdays=list(range(7)),
        start_time=dt.time(0),
        duration_minutes=1440,
        status="approved",
    )
    tab = Page(browser, demo["url"], "provider-admin")
    page = tab.page
    tab.login_with_keyboard("admin")
    assert page.locator("table.grid").inner_text().count("FRA1") == 1
    assert "IAD1" in page.locator("table.grid").inner_text()
    tab.shot("fleet")

    tab.tab_to("FRA1")  # fleet → site, by keyboard
    page.wait_for_url(re.compile(rf".*/console/sites/{fra.pk}/$"))
    assert page.locator("section.rack").count() == 4
    racks = page.locator("#racks").inner_text()
    assert "✗ 1 chip failed" in racks, racks
    tab.shot("site")

    page.get_by_role("link", name="FRA1-R02").click()  # site → rack
    page.wait_for_url(re.compile(r".*/console/racks/\d+/$"))
    tab.shot("rack")
    page.locator(".elevation a.slot.server").first.click()  # rack elevation → UltraServer
    page.wait_for_url(re.compile(r".*/console/ultraservers/\d+/"))
    cells = page.locator("table.heatgrid td.cell")
    assert cells.count() == 144
    assert page.locator("table.heatgrid td.cell.bad").count() == 1  # the failed chip, labelled
    assert "failed" in page.locator("table.heatgrid td.cell.bad").inner_text()
    # power, and the hottest chip and the chip average on the temperature chart
    assert page.locator("figure.chart svg polyline").count() == 3
    tab.shot("ultraserver-health")
    page.get_by_role("link", name="Temperature").click()
    page.wait_for_selector("table.heatgrid[data-metric=temp]")
    assert "°" in page.locator("table.heatgrid td.cell").nth(3).inner_text()
    tab.shot("ultraserver-temperature")

    # Start a rolling upgrade from a selection, then watch it advance.
    worker = worker_process(app_env(settings.REDIS_URL), tmp_path / "worker.log", "console")
    agent = AnsweringAgent(fra)
    agent.start()
    try:
        page.get_by_role("link", name="Workflows").click()
        page.get_by_role("link", name="Start a rolling upgrade").click()
        page.get_by_label("Site").select_option(str(fra.pk))
        page.get_by_role("button", name="Show UltraServers").click()
        page.get_by_label("Soak (seconds)").fill("0")
        page.get_by_label("Firmware version").select_option("2026.11.0")
        tab.shot("start-upgrade")
        page.get_by_role("button", name="Start rolling upgrade").click()
        page.wait_for_url(re.compile(r".*/console/workflows/$"))
        workflow = Workflow.objects.get(kind="upgrade")
        progress = page.locator(f"#wf-{workflow.pk} .progress-text")
        seen = [progress.inner_text()]
        deadline = time.monotonic() + 120

        def finished(text: str) -> bool:
            done, total = re.match(r"(\d+) of (\d+)", text).groups()
            return done == total

        while not finished(seen[-1]):
            assert time.monotonic() < deadline, (seen, worker.alive)
            time.sleep(1)
            text = page.locator(f"#wf-{workflow.pk} .progress-text").inner_text()
            if text != seen[-1]:
                seen.append(text)
                tab.shot("workflow-progress")
        assert seen[0].startswith("0 of ") and len(seen) >= 2, seen  # it moved on the page
        page.wait_for_selector(f"#wf-{workflow.pk} .state.succeeded", timeout=60_000)
        tab.shot("workflow-done")
    finally:
        agent.halt.set()
        agent.join(timeout=10)
        worker.stop()
    tab.only_talked_to(demo["url"])
    tab.close()


def test_tenant_admin_approves_a_window_and_an_access_request_and_reads_the_log(demo, browser):
    fra = demo["fra"]
    people = get_user_model().objects
    access = AccessRequest.objects.create(
        tenant=fra.tenant,
        site=fra,
        person=people.get(username="lukas.hoffmann"),
        requested_by=people.get(username="admin"),
        reason="replace a failed chip",
        starts_at=timezone.now() + dt.timedelta(hours=1),
        ends_at=timezone.now() + dt.timedelta(hours=5),
    )
    window = MaintenanceWindow.objects.get(site=fra, status="proposed")
    assert DecisionRecord.objects.filter(tenant_id=fra.tenant_id).exists()
    draft = SovereigntyRule.objects.create(
        tenant=fra.tenant,
        name="Data only in Germany",
        kind="residency",
        params={"allowed": ["DE"]},
    )

    tab = Page(browser, demo["url"], "tenant-admin")
    page = tab.page
    tab.login_with_keyboard("anna.schneider")
    assert "IAD1" not in page.locator("table.grid").inner_text()
    page.get_by_role("link", name="Sovereignty", exact=True).click()
    tab.shot("sovereignty")
    page.get_by_role("button", name=f"Approve window {window.name}").click()
    assert "approved" in page.locator(".messages").inner_text()
    page.get_by_role("button", name=f"Approve access request #{access.pk} (lukas.hoffmann)").click()
    assert "approved" in page.locator(".messages").inner_text()
    tab.shot("sovereignty-approved")
    window.refresh_from_db()
    access.refresh_from_db()
    assert window.status == "approved" and access.status == "approved"
    page.get_by_role("link", name="What if it were active?").click()
    page.wait_for_url(re.compile(rf".*/rules/{draft.pk}/what-if/$"))
    assert "What if “Data only in Germany” were active?" in page.locator("h1").inner_text()
    assert "Checked" in page.locator("main").inner_text()
    tab.shot("what-if")
    page.get_by_role("link", name="Access log").click()
    assert page.locator("table.grid tbody tr").count() >= 1
    assert "allowed" in page.locator("table.grid").inner_text()
    tab.shot("access-log")
    tab.only_talked_to(demo["url"])
    tab.close()


def test_a_tenant_operator_cannot_open_another_tenants_site(demo, browser):
    tab = Page(browser, demo["url"], "tenant-operator")
    tab.login_with_keyboard("marcus.johnson")  # meridian (IAD1) operator
    response = tab.page.goto(f"{demo['url']}/console/sites/{demo['fra'].pk}/")
    assert response.status == 404
    tab.shot("other-tenant-site-404")
    response = tab.page.goto(f"{demo['url']}/console/sites/{demo['iad'].pk}/")
    assert response.status == 200
    assert tab.page.get_by_role("link", name="Start a rolling upgrade").count() == 0
    tab.shot("own-site")
    tab.close()


def test_a_person_creates_an_api_token_sees_it_once_and_revokes_it(demo, browser):
    base = demo["url"]
    tab = Page(browser, base, "api-tokens")
    tab.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = tab.page
    tab.login_with_keyboard("lea.fischer")  # bsia viewer: tokens are everyone's own
    page.get_by_role("link", name="API tokens").click()
    page.wait_for_url(re.compile(r".*/console/tokens/$"))
    assert "You have no API tokens yet." in page.locator("main").inner_text()
    page.get_by_label("Name").fill("laptop")
    page.get_by_label("Read only").check()
    page.get_by_label("Expires after (days)").fill("7")
    tab.shot("tokens-new")
    page.get_by_role("button", name="Create token").click()
    clear = page.locator("#new-token").input_value()
    assert clear.startswith("afc_")
    assert "shown only this once" in page.locator("main").inner_text()
    page.get_by_role("button", name="Copy token").click()
    page.wait_for_function("document.getElementById('copy-status').textContent !== ''")
    assert page.locator("#copy-status").inner_text() == "Copied."
    assert page.evaluate("navigator.clipboard.readText()") == clear
    tab.shot("tokens-created")

    status, listed = api_get(f"{base}/api/v1/tokens/", clear)  # it works, read-only
    assert status == 200 and [t["name"] for t in listed["results"]] == ["laptop"]
    # Shown once: the page again lists it by its prefix only.
    page.get_by_role("link", name="API tokens").click()
    page.wait_for_url(re.compile(r".*/console/tokens/$"))
    assert page.locator("#new-token").count() == 0 and clear not in page.content()
    row = page.locator("table.tokens tbody tr")
    assert row.count() == 1 and "laptop" in row.inner_text() and "active" in row.inner_text()

    page.get_by_role("link", name="Revoke laptop").click()
    page.wait_for_url(re.compile(r".*/console/tokens/\d+/revoke/$"))
    tab.shot("tokens-revoke-confirm")
    page.get_by_role("button", name="Yes, revoke “laptop”").click()
    page.wait_for_url(re.compile(r".*/console/tokens/$"))
    assert "revoked" in page.locator(".messages").inner_text()
    assert "revoked" in page.locator("table.tokens tbody tr").inner_text()
    assert page.get_by_role("link", name="Revoke laptop").count() == 0
    tab.shot("tokens-revoked")
    assert api_get(f"{base}/api/v1/tokens/", clear)[0] == 401
    tab.only_talked_to(base)
    tab.close()


def api_get(url: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
