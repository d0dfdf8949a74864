"""Runs of one scheduled job never overlap (issue 18 item 3): a run that starts while another
holds the job's lock does nothing and is recorded ``skipped``; the lock goes with the holder's
connection, so a worker that died frees it. The holder here is a second real PostgreSQL
session, as a worker still rolling up would be."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from factory.telemetry.models import ServerRollup
from provisioning import jobs
from provisioning.jobruns import JOB_LOCK_CLASS, recorded
from provisioning.models import JobRun
from tests.support.processes import other_session
from tests.support.telemetry import agent_client, post, server_report
from tests.support.workflows import put_in_service

pytestmark = pytest.mark.django_db


def samples(fleet, count: int = 3) -> None:
    server = put_in_service(fleet.servers["alpha"])
    client, _ = agent_client(fleet.sites["alpha"])
    start = timezone.now().replace(second=0, microsecond=0) - dt.timedelta(minutes=2)
    for i in range(count):
        report = server_report(server.serial, i + 1, start + dt.timedelta(seconds=10 * i))
        assert post(client, [report]).status_code == 200


def test_a_roll_up_that_finds_another_running_does_nothing_and_says_so(fleet):
    samples(fleet)
    with other_session(autocommit=True) as worker:
        worker.execute(
            "SELECT pg_advisory_lock(%s, hashtext(%s))", [JOB_LOCK_CLASS, "telemetry-rollup"]
        )
        summary = jobs.telemetry_rollup()
        assert "still in progress" in summary["skipped"], summary
        assert not ServerRollup.objects.exists()  # nothing written twice, nothing at all
        run = JobRun.objects.get(job="telemetry-rollup")
        assert run.outcome == "skipped" and run.finished_at is not None
        # another job is not held by this one's lock
        assert jobs.telemetry_retention().get("skipped") is None
    # the holder's connection closed (its worker gone): the next run runs
    summary = jobs.telemetry_rollup()
    assert summary["minute_buckets"] >= 1, summary
    assert ServerRollup.objects.filter(resolution="1m").exists()
    assert JobRun.objects.filter(job="telemetry-rollup", outcome="ok").count() == 1


def test_a_run_releases_its_lock_whether_it_succeeds_or_fails(fleet):
    jobs.telemetry_rollup()
    with other_session(autocommit=True) as worker:
        free = worker.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", [JOB_LOCK_CLASS, "telemetry-rollup"]
        ).fetchone()[0]
        assert free, "the finished run kept its lock"
        worker.execute(
            "SELECT pg_advisory_unlock(%s, hashtext(%s))", [JOB_LOCK_CLASS, "telemetry-rollup"]
        )

    @recorded("always-fails")
    def broken() -> dict:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):  # a run that fails: its error recorded, its lock freed
        broken()
    assert JobRun.objects.get(job="always-fails").outcome == "failed"
    with other_session(autocommit=True) as worker:
        assert worker.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", [JOB_LOCK_CLASS, "always-fails"]
        ).fetchone()[0]
