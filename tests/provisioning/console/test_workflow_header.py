"""The workflow page's live header (its htmx refresh every few seconds) reads only what the
header shows: a few queries, the same for one server or many and for one technician or many
(the dispatch candidates, one sovereignty evaluation per technician, are the full page's and
only for those who may dispatch). Pause, resume and cancel have one path."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from provisioning.models import Step, Workflow, WorkflowTarget
from tenants.choices import Role
from tests.support.fleet import make_person, make_rack, make_server

pytestmark = pytest.mark.django_db


def login(client, username: str):
    client.force_login(get_user_model().objects.get(username=username))
    return client


def waiting_workflow(fleet, servers: int) -> Workflow:
    """A maintain workflow on ``servers`` of alpha's site, its first server's dispatch step
    waiting for a technician."""
    site = fleet.sites["alpha"]
    members = [fleet.servers["alpha"]] + [
        make_server(f"ALP1-X{i}", rack=make_rack(site, f"ALP1-X{i}")) for i in range(servers - 1)
    ]
    workflow = Workflow.objects.create(
        kind="maintain",
        state="running",
        site=site,
        started_at=timezone.now() - dt.timedelta(minutes=5),
    )
    for i, server in enumerate(members):
        target = WorkflowTarget.objects.create(
            workflow=workflow, ultraserver=server, state="running", batch=0
        )
        for seq, name in enumerate(("drain", "dispatch", "repair")):
            Step.objects.create(
                workflow=workflow,
                target=target,
                name=name,
                seq=seq,
                state="waiting" if (i == 0 and name == "dispatch") else "pending",
                started_at=timezone.now() if name == "dispatch" else None,
            )
    return workflow


def header_queries(client, workflow: Workflow) -> int:
    url = f"/console/workflows/{workflow.pk}/"
    client.get(url, HTTP_HX_REQUEST="true")  # session, warm
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="needs-action"' in html and "<html" not in html and "<details" not in html
    assert 'id="dispatch-title"' not in html  # no candidates in the live part
    return len(queries)


def test_the_live_header_costs_a_few_queries_flat_in_servers_and_technicians(client, fleet):
    login(client, "padmin")
    small = header_queries(client, waiting_workflow(fleet, 1))
    Workflow.objects.all().delete()
    for i in range(5):
        make_person(f"tech-{i}", Role.PROVIDER_TECHNICIAN)
    large = header_queries(client, waiting_workflow(fleet, 5))
    assert large == small <= 10, (small, large)


def test_only_those_who_may_dispatch_get_the_form_and_its_candidates(client, fleet):
    workflow = waiting_workflow(fleet, 1)
    url = f"/console/workflows/{workflow.pk}/"
    for who, offered in (("padmin", True), ("tech", True), ("alpha-admin", False)):
        page = login(client, who).get(url).content.decode()
        assert ('id="dispatch-title"' in page) is offered, who
    # a technician's dispatch is accepted as the form offers it (not refused as staff-only)
    login(client, "tech")
    response = client.post(f"{url}dispatch/", {"technician": "0"})
    assert response.status_code == 302  # "choose one offered": back to the page, not a 403
    login(client, "alpha-admin")
    assert client.post(f"{url}dispatch/", {"technician": "0"}).status_code == 403


def test_pause_resume_and_cancel_have_one_path(client, fleet):
    workflow = waiting_workflow(fleet, 1)
    login(client, "padmin")
    base = f"/console/workflows/{workflow.pk}/"
    assert client.post(f"{base}pause/", {"reason": "x"}).status_code == 404  # the old one
    refused = client.post(f"{base}steer/pause/", {"reason": "  "})
    assert refused.status_code == 400 and "reason is required" in refused.content.decode()
    assert client.post(f"{base}steer/pause/", {"reason": "lunch"}).status_code == 302
    workflow.refresh_from_db()
    assert workflow.state == "paused"
    header = client.get(base, HTTP_HX_REQUEST="true").content.decode()
    assert f'action="{base}steer/resume/"' in header
    assert client.get(f"{base}steer/resume/").status_code == 405
    assert client.post(f"{base}steer/resume/").status_code == 302
    workflow.refresh_from_db()
    assert workflow.state == "running"
    assert client.post(f"{base}steer/nonsense/").status_code == 404


def test_the_header_shows_the_version_each_server_ran_when_planned_not_its_new_one(client, fleet):
    """After the flash a server already runs the new version: "from" is the flash step's
    planned ``from_version``, not what the server runs now."""
    site = fleet.sites["alpha"]
    upgraded = fleet.servers["alpha"]
    other = make_server("ALP1-Y1", rack=make_rack(site, "ALP1-Y1"))
    workflow = Workflow.objects.create(
        kind="upgrade",
        state="running",
        site=site,
        spec={"firmware_version": "2.0"},
        started_at=timezone.now() - dt.timedelta(minutes=5),
    )
    for server, state in ((upgraded, "succeeded"), (other, "running")):
        target = WorkflowTarget.objects.create(
            workflow=workflow, ultraserver=server, state=state, batch=0
        )
        Step.objects.create(
            workflow=workflow,
            target=target,
            name="flash",
            seq=0,
            state=state,
            input={"from_version": "1.0"},
        )
    type(upgraded).objects.filter(pk__in=[upgraded.pk, other.pk]).update(firmware_version="1.0")
    type(upgraded).objects.filter(pk=upgraded.pk).update(firmware_version="2.0")  # flashed
    header = login(client, "alpha-admin").get(
        f"/console/workflows/{workflow.pk}/", HTTP_HX_REQUEST="true"
    )
    assert "<dd>1.0 → 2.0</dd>" in header.content.decode()
