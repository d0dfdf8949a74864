"""Step leases (provisioning.leases): a live worker keeps them, a lost one loses them; a step
whose row is locked (a worker acting on it) is never taken back however long it takes. The
live proof with real workers killed mid-step is tests/e2e/test_step_lease_recovery.py."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from provisioning import leases, rollout, runner, services
from provisioning.models import Step
from tests.support.fleet import CTX
from tests.support.processes import other_session
from tests.support.workflows import put_in_service

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def claimed(fleet):
    """A maintain workflow's first step, claimed by worker "w1", its lease already run out."""
    server = put_in_service(fleet.servers["alpha"])
    _, workflow = services.report_fault(server, "HBM ECC storm on chip 9", CTX)
    rollout.advance(workflow.pk)  # its first step ready
    step = Step.objects.filter(workflow=workflow).order_by("seq").first()
    assert step.state == "ready"
    assert runner.claim_steps([step.pk], "w1") == [step.pk]
    Step.objects.filter(pk=step.pk).update(
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    return Step.objects.get(pk=step.pk)


def test_renewing_pushes_out_only_the_owners_running_leases(claimed):
    assert leases.renew([claimed.pk], "w2") == []  # not w2's
    assert leases.renew([claimed.pk], "w1") == [claimed.pk]
    claimed.refresh_from_db()
    left = (claimed.lease_expires_at - timezone.now()).total_seconds()
    assert leases.lease_seconds() - 2 < left <= leases.lease_seconds()
    assert runner.recover_expired_leases() == 0  # kept


def test_the_heartbeat_renews_what_this_process_runs_and_stops_when_it_is_done(claimed):
    assert leases.beat_once() == 0  # not registered: nothing this process runs
    leases.running([claimed.pk], "w1")
    try:
        assert leases.beat_once() == 1
    finally:
        leases.done([claimed.pk])
    assert leases.in_process() == {}
    Step.objects.filter(pk=claimed.pk).update(lease_expires_at=timezone.now())
    assert leases.beat_once() == 0
    assert runner.recover_expired_leases() == 1  # lost: handed back
    claimed.refresh_from_db()
    assert claimed.state == "waiting" and claimed.lease_owner == ""


def test_a_step_being_acted_on_is_neither_renewed_nor_taken_back(claimed):
    with other_session() as worker:  # the worker acting on it holds its row
        worker.execute(
            f'SELECT 1 FROM "{Step._meta.db_table}" WHERE id = %s FOR UPDATE', [claimed.pk]
        )
        assert leases.renew([claimed.pk], "w1") == []  # skipped, not waited for
        assert runner.recover_expired_leases() == 0  # a live worker's: never taken
        worker.rollback()  # the worker is gone (its transaction with it)
    assert runner.recover_expired_leases() == 1


def test_running_steps_registers_them_for_the_heartbeat_only_while_they_run(fleet):
    server = put_in_service(fleet.servers["alpha"])
    _, workflow = services.report_fault(server, "HBM ECC storm on chip 9", CTX)
    rollout.advance(workflow.pk)  # its first step ready
    step = Step.objects.filter(workflow=workflow).order_by("seq").first()
    assert step.state == "ready"
    seen: list[dict[int, str]] = []
    real = runner._StepBatch.run

    def spy(self):
        seen.append(leases.in_process())
        return real(self)

    runner._StepBatch.run = spy  # type: ignore[method-assign]
    try:
        runner.run_steps([step.pk], "w1")
    finally:
        runner._StepBatch.run = real  # type: ignore[method-assign]
    assert seen == [{step.pk: "w1"}]
    assert leases.in_process() == {}
