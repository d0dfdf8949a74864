"""Scheduled jobs (each run recorded) and the admin pages for workflows."""

import datetime as dt

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from factory.agents import services as agents
from factory.inventory.models import UltraServer
from provisioning import jobs
from provisioning.models import JobRun, Notification, Workflow
from tests.support.fleet import CTX
from tests.support.workflows import put_in_service

pytestmark = pytest.mark.django_db


def test_schedules_live_in_the_database():
    tasks = dict(PeriodicTask.objects.values_list("name", "task"))
    assert tasks["reconciler"] == "provisioning.reconcile"
    assert tasks["health sweep"] == "provisioning.health_sweep"
    assert tasks["firmware compliance scan"] == "provisioning.firmware_compliance_scan"
    assert tasks["stale-agent detection"] == "provisioning.detect_stale_agents"


def test_compliance_scan_proposes_one_upgrade_per_site_for_the_next_window(fleet, in_service):
    summary = jobs.firmware_compliance_scan()
    assert summary["drifted"] == 0  # everything runs the 1.0 baseline
    UltraServer.objects.filter(pk__in=[s.pk for s in in_service[:2]]).update(firmware_version="0.9")
    summary = jobs.firmware_compliance_scan()
    assert summary["drifted"] == 2
    proposed = Workflow.objects.get(kind="upgrade")
    assert proposed.state == "proposed" and proposed.spec["firmware_version"] == "1.0"
    assert not proposed.targets.filter(active=True).exists()  # holds nothing until started
    assert Notification.objects.filter(kind="upgrade-proposed", tenant=fleet.alpha).exists()
    jobs.firmware_compliance_scan()
    assert Workflow.objects.count() == 1  # not proposed twice
    run = JobRun.objects.filter(job="firmware-compliance").first()
    assert run.outcome == "ok" and run.summary["drifted"] == 2


def test_stale_agent_marks_its_sites_servers_unreachable_until_it_reports(fleet):
    agent, token = agents.issue_agent(fleet.sites["alpha"], "a", CTX)
    agent.last_seen_at = timezone.now() - dt.timedelta(hours=1)
    agent.save()
    assert jobs.detect_stale_agents()["servers_marked_unreachable"] == 1
    server = UltraServer.objects.get(pk=fleet.servers["alpha"].pk)
    assert server.unreachable_since is not None
    assert UltraServer.objects.get(pk=fleet.servers["beta"].pk).unreachable_since is None
    agents.authenticate_agent(token)  # it calls in again
    assert UltraServer.objects.get(pk=server.pk).unreachable_since is None


def test_health_sweep_opens_maintenance_for_flagged_servers(fleet, releases):
    server = put_in_service(fleet.servers["alpha"])
    server.chips.filter(index=3).update(health="failed")
    summary = jobs.health_sweep()
    assert len(summary["opened"]) == 1
    assert Workflow.objects.get(pk=summary["opened"][0]).kind == "maintain"
    assert jobs.health_sweep()["opened"] == []  # already looked after


def test_a_failing_job_records_its_error(monkeypatch):
    def boom():
        raise RuntimeError("database on fire")

    wrapped = jobs.recorded("boom")(boom)
    with pytest.raises(RuntimeError):
        wrapped()
    run = JobRun.objects.get(job="boom")
    assert run.outcome == "failed" and "database on fire" in run.error


def test_admin_starts_an_upgrade_from_a_selection(fleet, in_service, client):
    padmin = fleet.people["provider_admin"]
    padmin.is_superuser = True
    padmin.save()
    client.force_login(fleet.people["alpha_admin"])
    assert client.get("/admin/provisioning/workflow/start-upgrade/").status_code in (302, 403)
    client.force_login(padmin)
    ids = ",".join(str(s.pk) for s in in_service[:2])
    page = client.get(f"/admin/provisioning/workflow/start-upgrade/?ids={ids}")
    assert page.status_code == 200 and b"Start a rolling upgrade" in page.content
    spec = {
        "firmware_version": "2.0",
        "canary_size": 1,
        "batch_size": 1,
        "max_unavailable_per_domain": 1,
        "soak_seconds": 0,
        "max_failures": 0,
    }
    response = client.post(
        "/admin/provisioning/workflow/start-upgrade/",
        {"ultraservers": [s.pk for s in in_service[:2]], **spec},
    )
    workflow = Workflow.objects.get()
    assert response.status_code == 302 and workflow.targets.count() == 2
    detail = client.get(f"/admin/provisioning/workflow/{workflow.pk}/change/")
    assert detail.status_code == 200 and b"drain" in detail.content
    refused = client.post(
        "/admin/provisioning/workflow/start-upgrade/", {"ultraservers": [in_service[0].pk], **spec}
    )
    assert refused.status_code == 200 and b"is held by upgrade workflow" in refused.content
    servers = client.get("/admin/inventory/ultraserver/")
    assert b"start_rolling_upgrade" in servers.content


def test_workflow_history_is_append_only_even_in_raw_sql(fleet):
    from django.db import DatabaseError, connection, transaction

    from provisioning.models import WorkflowEvent

    workflow = Workflow.objects.create(site=fleet.sites["alpha"], kind="deploy")
    event = WorkflowEvent.objects.create(workflow=workflow, kind="created", message="x")
    for sql in (
        "UPDATE provisioning_workflowevent SET message = 'forged' WHERE id = %s",
        "DELETE FROM provisioning_workflowevent WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            connection.cursor().execute(sql, [event.pk])
    assert WorkflowEvent.objects.get(pk=event.pk).message == "x"
