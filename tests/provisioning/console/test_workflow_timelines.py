"""The workflow page's server sections (issue 17 items 2 and 5): filtered by the server's state
and by the steps' state; and refreshed live by one poll whose answer swaps each server's
state, timeline and verified state in by id (never the sections or their forms), a few
queries whatever the number of servers, and tells htmx to stop once the workflow has ended."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from provisioning.models import Step, Workflow, WorkflowTarget
from tests.provisioning.console.test_workflow_header import login, waiting_workflow

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def sections(html: str) -> list[str]:
    """The serials of the server sections on the page."""
    return re.findall(r'<details class="card target"[^>]*>\s*<summary>(\S+)', html)


def a_failed_server(workflow: Workflow) -> WorkflowTarget:
    """The workflow's last server failed at its drain (the others run or wait)."""
    target = workflow.targets.order_by("id").last()
    target.state, target.error = "failed", "drain refused"
    target.save(update_fields=["state", "error"])
    Step.objects.filter(target=target, name="drain").update(state="failed", error="refused")
    return target


def test_the_servers_filter_by_their_state(client, fleet):
    workflow = waiting_workflow(fleet, 3)
    failed = a_failed_server(workflow)
    login(client, "padmin")
    url = f"/console/workflows/{workflow.pk}/"
    assert len(sections(client.get(url).content.decode())) == 3
    html = client.get(url, {"state": "failed"}).content.decode()
    assert sections(html) == [failed.ultraserver.serial]
    assert '<option value="failed" selected>' in html
    html = client.get(url, {"state": "succeeded"}).content.decode()
    assert sections(html) == [] and "No UltraServers in state succeeded." in html
    # an unknown state filters nothing (and is not echoed back as chosen)
    html = client.get(url, {"state": "nonsense"}).content.decode()
    assert len(sections(html)) == 3 and "nonsense" not in html


def test_the_steps_filter_by_their_state_and_only_servers_with_one_show(client, fleet):
    workflow = waiting_workflow(fleet, 3)
    failed = a_failed_server(workflow)
    first = workflow.targets.order_by("id").first()
    login(client, "padmin")
    url = f"/console/workflows/{workflow.pk}/"
    html = client.get(url, {"step_state": "waiting"}).content.decode()
    assert sections(html) == [first.ultraserver.serial]
    timeline = html.split(f'id="timeline-{first.pk}"', 1)[1].split("</ol>", 1)[0]
    assert re.findall(r'data-step="(\w+)"', timeline) == ["dispatch"]
    html = client.get(url, {"step_state": "failed", "state": "failed"}).content.decode()
    assert sections(html) == [failed.ultraserver.serial]
    assert "refused" in html and '<option value="failed" selected>' in html


def poll(client, workflow: Workflow, **query):
    return client.get(f"/console/workflows/{workflow.pk}/", {"part": "timelines", **query}, **HX)


def test_the_poll_swaps_each_servers_parts_by_id_and_never_a_section(client, fleet):
    workflow = waiting_workflow(fleet, 2)
    login(client, "padmin")
    page = client.get(f"/console/workflows/{workflow.pk}/").content.decode()
    assert 'id="timelines-poll"' in page and 'hx-trigger="every 5s"' in page
    first = workflow.targets.order_by("id").first()
    Step.objects.filter(target=first, name="dispatch").update(state="succeeded")
    response = poll(client, workflow)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<details" not in html and "<form" not in html and "<html" not in html
    ids = re.findall(r'id="([\w-]+)" hx-swap-oob="true"', html)
    assert sorted(ids) == sorted(
        f"{part}-{t.pk}"
        for t in workflow.targets.all()
        for part in ("target-state", "timeline", "verified")
    )
    timeline = html.split(f'id="timeline-{first.pk}"', 1)[1].split("</ol>", 1)[0]
    assert '<li class="step succeeded" data-step="dispatch">' in timeline
    # every id it swaps is on the page, so nothing it sends is dropped
    assert all(f'id="{i}"' in page for i in ids)


def test_the_poll_keeps_the_pages_filters(client, fleet):
    workflow = waiting_workflow(fleet, 3)
    failed = a_failed_server(workflow)
    login(client, "padmin")
    page = client.get(f"/console/workflows/{workflow.pk}/", {"state": "failed"}).content.decode()
    assert "?part=timelines&amp;state=failed&amp;step_state=" in page
    html = poll(client, workflow, state="failed").content.decode()
    assert set(re.findall(r'id="timeline-(\d+)"', html)) == {str(failed.pk)}


def test_the_poll_costs_a_few_queries_flat_in_servers(client, fleet):
    login(client, "padmin")
    counts = []
    for servers in (1, 6):
        Workflow.objects.all().delete()
        workflow = waiting_workflow(fleet, servers)
        poll(client, workflow)  # session, warm
        with CaptureQueriesContext(connection) as queries:
            assert poll(client, workflow).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 8, counts


def test_the_poll_stops_once_the_workflow_has_ended_and_the_page_does_not_poll(client, fleet):
    workflow = waiting_workflow(fleet, 1)
    login(client, "padmin")
    Workflow.objects.filter(pk=workflow.pk).update(state="cancelled")
    response = poll(client, workflow)
    assert response.status_code == 286  # htmx: stop polling; its content still swapped in
    assert 'id="timeline-' in response.content.decode()
    page = client.get(f"/console/workflows/{workflow.pk}/").content.decode()
    assert 'id="timelines-poll"' not in page and 'hx-trigger="every 5s"' not in page


def test_another_tenants_workflow_polls_as_404(client, fleet):
    workflow = waiting_workflow(fleet, 1)
    login(client, "beta-admin")
    assert poll(client, workflow).status_code == 404
