"""The workflow page in a real browser (issue 17 item 2): a maintain workflow waiting for a
technician says why on its page; the dispatch form offers only the technicians the tenant's
sovereignty rules allow now (and says why the others are not offered); dispatching moves it
on, live in the server's timeline; cancel asks for a reason; an opened section (and a reason
half typed in it) stays across the live refresh.
Screenshots: test-artifacts/console/workflow-*.png."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from factory.agents import services as agents
from factory.inventory.models import UltraServer
from provisioning import rollout, services
from provisioning.models import Step, Workflow
from tenants.sovereignty.models import AccessRequest, AccessRequestStatus
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


def _waiting_for_dispatch(fra) -> tuple[Workflow, object, SimHardware]:
    server = (
        UltraServer.objects.filter(rack__site=fra, lifecycle_state="in-service")
        .exclude(workflow_targets__active=True)
        .order_by("serial")
        .first()
    )
    assert server is not None
    agent, _ = agents.issue_agent(fra, "workflow-page-agent", CTX)
    hw = SimHardware()
    _, workflow = services.report_fault(server, "HBM ECC storm on chip 9", CTX)
    workflow = drive(workflow, agent, hw, rounds=4)
    assert Step.objects.get(workflow=workflow, name="dispatch").state == "waiting"
    # bsia's lockbox: a grant for lukas.hoffmann, in effect now (the demo's starts later)
    users = get_user_model().objects
    AccessRequest.objects.create(
        tenant=fra.tenant,
        site=fra,
        person=users.get(username="lukas.hoffmann"),
        requested_by=users.get(username="sofia.lindqvist"),
        reason="Replace the HBM stack",
        justification="provider_maintenance",
        scope="physical_repair",
        office_country="DE",
        physical_country="DE",
        starts_at=timezone.now() - dt.timedelta(minutes=5),
        ends_at=timezone.now() + dt.timedelta(hours=4),
        status=AccessRequestStatus.APPROVED,
    )
    return workflow, agent, hw


def test_the_workflow_page_dispatches_only_allowed_people_and_keeps_sections_open(
    browser,  # noqa: F811
    demo,  # noqa: F811
):
    workflow, agent, hw = _waiting_for_dispatch(demo["fra"])
    tab = Page(browser, demo["url"], "workflow")
    page = tab.page
    tab.login_with_keyboard("admin")
    page.goto(f"{demo['url']}/console/workflows/")
    page.click(f"#wf-title-{workflow.pk} a")
    page.wait_for_url(f"**/console/workflows/{workflow.pk}/")
    banner = page.locator("#needs-action")
    assert "waiting for a technician" in banner.inner_text()
    page.screenshot(path=str(ARTIFACTS / "workflow-1-waiting.png"), full_page=True)

    offered = page.locator("#technician option").all_inner_texts()
    assert "lukas.hoffmann" in offered and "daniel.reyes" not in offered, offered
    refused = page.locator("ul.not-offered").inner_text()
    assert "daniel.reyes" in refused  # not offered, and why
    assert "Cleared German staff" in refused or "nationalit" in refused.lower(), refused

    # a server's section, opened, stays open across the header's live refresh (every 5 s)
    section = page.locator("details.target").first
    section.locator("summary").click()
    assert section.evaluate("d => d.open")
    with page.expect_response(lambda r: f"/console/workflows/{workflow.pk}/" in r.url):
        pass
    page.wait_for_timeout(700)
    assert section.evaluate("d => d.open"), "the opened section collapsed on refresh"
    page.screenshot(path=str(ARTIFACTS / "workflow-2-section-open.png"), full_page=True)

    page.select_option("#technician", label="lukas.hoffmann")
    with page.expect_navigation():
        page.get_by_role("button", name="Dispatch").click()
    assert "lukas.hoffmann dispatched" in page.locator(".messages").inner_text()
    # the server's timeline moves on live, inside the section the person opened, and the
    # reason they were typing there stays (the poll swaps the timeline, not the section)
    waiting = Step.objects.get(workflow=workflow, name="dispatch")
    section = page.locator(f"#target-{waiting.target_id}")
    section.locator("summary").click()
    step = section.locator('li[data-step="dispatch"]')
    assert "Waiting" in step.inner_text(), step.inner_text()
    half_typed = section.locator(f"#release-reason-{waiting.target_id}")
    half_typed.fill("the technician is on the way")
    drive(workflow, agent, hw, rounds=2)
    dispatch = Step.objects.get(workflow=workflow, name="dispatch")
    assert dispatch.state == "succeeded", (
        dispatch.input,
        dispatch.output,
        list(workflow.events.values_list("kind", "message"))[-4:],
    )
    with page.expect_response(lambda r: "part=timelines" in r.url, timeout=12_000):
        pass
    page.wait_for_function(
        "id => document.querySelector(`#target-${id} li[data-step=dispatch]`)"
        ".textContent.includes('Succeeded')",
        arg=waiting.target_id,
        timeout=3_000,
    )
    assert section.evaluate("d => d.open"), "the opened section collapsed on the live refresh"
    assert half_typed.input_value() == "the technician is on the way"
    page.screenshot(path=str(ARTIFACTS / "workflow-3-timeline-live.png"), full_page=True)
    page.reload()
    assert "part replacement" in page.locator("#needs-action").inner_text()
    assert page.locator("#technician").count() == 0  # nothing waits for a dispatch now
    page.screenshot(path=str(ARTIFACTS / "workflow-4-dispatched.png"), full_page=True)

    page.get_by_role("link", name="Cancel…").click()
    page.wait_for_url(f"**/console/workflows/{workflow.pk}/steer/cancel/")
    reason = page.locator("#reason")
    assert reason.get_attribute("required") is not None
    page.screenshot(path=str(ARTIFACTS / "workflow-5-cancel-asks-why.png"), full_page=True)
    reason.fill("the part is on back-order")
    with page.expect_navigation():
        page.get_by_role("button", name="Cancel").click()
    rollout.advance(workflow.pk)
    page.reload()
    workflow.refresh_from_db()
    assert workflow.state == "cancelled", workflow.state_reason
    assert "Cancelled" in page.locator("h1").inner_text()
    page.screenshot(path=str(ARTIFACTS / "workflow-6-cancelled.png"), full_page=True)
    tab.close()
