"""The workflow list (/console/workflows/) in a real browser: it refreshes itself (htmx,
``hx-trigger="every 3s"`` in workflows.html); a <details> section a person opened stays open
across the refreshes (keep_open.js), and what changed on the server meanwhile shows in it
without a reload. Screenshots: test-artifacts/console/workflow-list-*.png."""

from __future__ import annotations

import pytest

from factory.agents import services as agents
from factory.inventory.models import UltraServer
from provisioning import services
from provisioning.models import Step, WorkflowTarget
from tests.provisioning.console.test_browser import (  # noqa: F401 - the shared fixtures
    ARTIFACTS,
    Page,
    browser,
    demo,
)
from tests.support.hardware import SimHardware
from tests.support.harness import drive
from tests.support.telemetry import CTX

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

#: The list's refresh period (workflows.html: hx-trigger="every 3s" on #workflows).
REFRESH_MS = 3000

#: Numbers each refresh request (a header) and remembers the last one swapped into the page,
#: so the test waits for the swap of the very request it saw leave; marks the page so a reload
#: would show.
WATCH = """() => {
  window.__notReloaded = true;
  window.__sent = 0;
  window.__swapped = 0;
  document.addEventListener("htmx:configRequest", (e) => {
    e.detail.headers["X-Refresh-Seq"] = String(++window.__sent);
  });
  document.addEventListener("htmx:afterSwap", (e) => {
    window.__swapped = Number(e.detail.requestConfig.headers["X-Refresh-Seq"]);
  });
}"""


def test_an_opened_section_stays_open_while_the_list_refreshes_with_news(
    browser,  # noqa: F811
    demo,  # noqa: F811
):
    fra = demo["fra"]
    server = (
        UltraServer.objects.filter(rack__site=fra, lifecycle_state="in-service")
        .exclude(workflow_targets__active=True)
        .select_related("rack")
        .order_by("serial")
        .first()
    )
    assert server is not None
    agent, _ = agents.issue_agent(fra, "workflow-list-agent", CTX)
    hw = SimHardware()
    _, workflow = services.report_fault(server, "HBM ECC storm on chip 3", CTX)
    [target] = WorkflowTarget.objects.filter(workflow=workflow)
    assert workflow.state == "running" and target.state == "pending"

    tab = Page(browser, demo["url"], "workflow-list")
    page = tab.page
    tab.login_with_keyboard("admin")
    page.goto(f"{demo['url']}/console/workflows/")
    assert page.locator("#workflows").get_attribute("hx-trigger") == f"every {REFRESH_MS // 1000}s"
    page.evaluate(WATCH)
    card = page.locator(f"#wf-{workflow.pk}")
    section = page.locator(f"#wf-{workflow.pk}-domains")
    progress = card.locator(".progress-text")
    rack = server.rack.name
    # closed, its content is in the page but hidden
    assert section.locator("li").text_content() == f"{rack}: 1 pending"
    assert not section.locator("li").is_visible()
    assert "in progress" not in progress.inner_text()
    assert card.locator(".needs-action").count() == 0
    assert not section.evaluate("d => d.open")
    section.locator("summary").click()
    assert section.evaluate("d => d.open")
    section.evaluate("d => { d.__beforeRefresh = true; }")  # the node the person opened

    def next_refresh() -> None:
        """Wait for the next refresh request to leave, its response, and its swap."""
        with page.expect_request(
            lambda r: r.url.endswith("/console/workflows/") and "x-refresh-seq" in r.headers,
            timeout=REFRESH_MS + 2000,
        ) as sent:
            pass
        request = sent.value
        response = request.response()
        assert response is not None and response.status == 200
        assert request.headers.get("hx-request") == "true"
        seq = int(request.headers["x-refresh-seq"])
        page.wait_for_function(f"window.__swapped >= {seq}", timeout=REFRESH_MS)

    # 1st refresh: nothing changed; the section is a new node and open again.
    next_refresh()
    assert section.evaluate("d => d.__beforeRefresh === undefined"), "the list was not swapped"
    assert section.evaluate("d => d.open"), "the opened section collapsed on refresh"
    assert section.locator("li").inner_text() == f"{rack}: 1 pending"

    # The server moves on: the drain step starts, the UltraServer is in progress.
    workflow = drive(workflow, agent, hw, rounds=1)
    target.refresh_from_db()
    assert target.state == "running"
    next_refresh()
    assert section.evaluate("d => d.open"), "the opened section collapsed on the 2nd refresh"
    assert section.locator("li").inner_text() == f"{rack}: 1 running"
    assert "1 in progress" in progress.inner_text()
    page.screenshot(path=str(ARTIFACTS / "workflow-list-1-running.png"), full_page=True)

    # Drained; now it waits for a technician: the row says so, the section still open.
    workflow = drive(workflow, agent, hw, rounds=4)
    assert Step.objects.get(workflow=workflow, name="dispatch").state == "waiting"
    next_refresh()
    assert section.evaluate("d => d.open"), "the opened section collapsed on the 3rd refresh"
    need = card.locator(".needs-action").inner_text()
    assert f"{server.serial}: waiting for a technician" in need, need
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    assert page.evaluate("window.__sent") >= 3
    page.screenshot(path=str(ARTIFACTS / "workflow-list-2-needs-action.png"), full_page=True)
    tab.only_talked_to(demo["url"])
    tab.close()
