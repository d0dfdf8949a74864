"""Operator actions on the workflow page in a real browser (issue 17 item 2): a maintain
workflow stuck waiting for a technician; the SRE opens the server's section, the
force-release form asks for a reason, and releasing flags the server for maintenance.
Screenshots: test-artifacts/console/operator-*.png."""

from __future__ import annotations

import pytest

from factory.agents import services as agents
from factory.inventory.models import UltraServer
from provisioning import services
from provisioning.models import Step
from tenants.models import AuditEvent
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


def test_force_release_asks_why_and_flags_the_server(browser, demo):  # noqa: F811
    fra = demo["fra"]
    server = (
        UltraServer.objects.filter(rack__site=fra, lifecycle_state="in-service")
        .exclude(workflow_targets__active=True)
        .order_by("serial")
        .first()
    )
    agent, _ = agents.issue_agent(fra, "operator-page-agent", CTX)
    _, workflow = services.report_fault(server, "PSU hums", CTX)
    workflow = drive(workflow, agent, SimHardware(), rounds=4)
    assert Step.objects.get(workflow=workflow, name="dispatch").state == "waiting"
    target = workflow.targets.get()

    tab = Page(browser, demo["url"], "operator")
    page = tab.page
    tab.login_with_keyboard("admin")
    page.goto(f"{demo['url']}/console/workflows/{workflow.pk}/")
    section = page.locator(f"#target-{target.pk}")
    section.locator("summary").click()
    reason = section.locator(f"#release-reason-{target.pk}")
    assert reason.get_attribute("required") is not None
    section.locator("text=Force-release hold").click()  # no reason: the browser refuses
    assert page.url.endswith(f"/console/workflows/{workflow.pk}/")
    target.refresh_from_db()
    assert target.active
    reason.fill("technician never came; the lockbox is wedged")
    page.screenshot(path=str(ARTIFACTS / "operator-1-release-asks-why.png"), full_page=True)
    section.locator("text=Force-release hold").click()
    page.wait_for_url(f"**/console/workflows/{workflow.pk}/#target-{target.pk}")
    target.refresh_from_db()
    assert (target.state, target.active) == ("failed", False)
    server.refresh_from_db()
    assert server.in_maintenance and "lockbox is wedged" in server.fault_reason
    assert AuditEvent.objects.filter(
        object_type="provisioning.workflow", after__verb="force-release", source="console"
    ).exists()
    assert "force-release done" in page.content()
    page.screenshot(path=str(ARTIFACTS / "operator-2-released.png"), full_page=True)
    tab.close()
