"""The scheduler lease (provisioning.scheduler): one beat replica sends the scheduled jobs,
another takes over when its lease runs out or is given back, and readiness and a metric say
when no one holds it. The live proof with two real beat processes is
tests/e2e/test_beat_failover.py."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models.functions import Now
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from factory.celery import app
from provisioning import scheduler
from provisioning.models import SchedulerLease
from tests.support.fleet import build_fleet

pytestmark = pytest.mark.django_db


def run_out() -> None:
    """The holder stopped renewing a lease ago."""
    past = timezone.now() - dt.timedelta(seconds=scheduler.lease_seconds() + 1)
    SchedulerLease.objects.update(renewed_at=past, expires_at=past)


def test_one_holder_at_a_time_and_the_holder_renews():
    assert scheduler.hold("a")
    assert not scheduler.hold("b")  # a holds it: b stands by
    before = SchedulerLease.objects.get()
    assert scheduler.hold("a")
    after = SchedulerLease.objects.get()
    assert after.holder == "a" and after.since == before.since
    assert after.expires_at >= before.expires_at
    assert (after.expires_at - after.renewed_at).total_seconds() == scheduler.lease_seconds()


def test_a_lease_run_out_is_taken_by_the_standby_and_the_old_holder_cannot_renew_it():
    assert scheduler.hold("a")
    run_out()
    assert scheduler.hold("b")
    assert not scheduler.hold("a")
    lease = SchedulerLease.objects.get()
    assert lease.holder == "b"


def test_a_lease_given_back_is_taken_at_once():
    assert scheduler.hold("a")
    scheduler.release("b")  # not b's to give
    assert not scheduler.hold("b")
    scheduler.release("a")
    assert scheduler.hold("b")


def test_the_check_says_none_ran_stale_or_ok():
    assert scheduler.check() == "no scheduler (celery beat) has run"
    scheduler.hold("beat-1")
    assert scheduler.check() is None and scheduler.state().up
    run_out()
    reason = scheduler.check()
    assert reason is not None and reason.startswith("stale: ") and "beat-1" in reason
    assert not scheduler.state().up


def test_readyz_reports_the_scheduler_without_gating_on_it_and_answers_it_alone(client):
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["checks"] == {"database": "ok", "broker": "ok"}
    assert body["reported"] == {"scheduler": "no scheduler (celery beat) has run"}
    alone = client.get("/readyz/scheduler")
    assert alone.status_code == 503
    assert alone.json() == {
        "status": "unavailable",
        "check": "scheduler",
        "reason": "no scheduler (celery beat) has run",
    }
    scheduler.hold("beat-1")
    assert client.get("/readyz/scheduler").json() == {"status": "ok", "check": "scheduler"}
    assert client.get("/readyz").json()["reported"] == {"scheduler": "ok"}
    assert client.get("/readyz/nothing").status_code == 404


def test_the_metric_says_whether_a_replica_holds_the_lease(client):
    fleet = build_fleet()
    admin = fleet.client("provider_admin")

    def scrape() -> str:
        response = admin.get("/metrics")
        assert response.status_code == 200
        return response.content.decode()

    assert "\nfactory_scheduler_up 0.0" in scrape()
    scheduler.hold("beat-1")
    text = scrape()
    assert "\nfactory_scheduler_up 1.0" in text
    assert "\nfactory_scheduler_lease_renewed_timestamp_seconds " in text


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # beat commits as it goes
def test_a_standby_scheduler_sends_nothing_and_takes_over_once_the_lease_runs_out():
    assert PeriodicTask.objects.filter(name="reconciler", enabled=True).exists()
    PeriodicTask.objects.update(last_run_at=timezone.now() - dt.timedelta(hours=1))  # all due
    scheduler.hold("other-replica")
    beat = scheduler.LeaderScheduler(app=app, lazy=True)
    sent: list[str] = []
    beat.apply_entry = lambda entry, producer=None: sent.append(entry.name)  # type: ignore[method-assign]
    try:
        assert beat.tick() == scheduler.renew_every()
        assert not beat.leading and sent == []
        run_out()
        for _ in range(50):
            beat.tick()
        assert beat.leading
        assert SchedulerLease.objects.get().holder == beat.holder
        assert "reconciler" in sent
    finally:
        beat.close()
    lease = SchedulerLease.objects.annotate(db_now=Now()).get()
    assert lease.expires_at <= lease.db_now  # given back on close
