"""The engine's batched path: many steps per claim and transaction, a finished step handing
over to its server's next one in the same commit, and agents reporting results in batches."""

import base64
import json
import uuid

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from factory import wire
from factory.agents import services as agents
from factory.agents.models import AgentCommand
from factory.wire import CommandKind, HardwareState
from provisioning import jobs, rollout, runner, services
from provisioning.models import Step
from tests.support.api import agent_token_client, assert_error_body, gateway
from tests.support.fleet import CTX
from tests.support.harness import answer_commands, drive

pytestmark = pytest.mark.django_db


def started_upgrade(servers):
    """All of ``servers`` in one batch, their first steps due."""
    spec = {"firmware_version": "2.0", "soak_seconds": 0, "canary_size": 0}
    workflow, _ = services.create_workflow(
        "upgrade", servers, CTX, spec={**spec, "batch_size": len(servers), "poll_seconds": 1}
    )
    rollout.advance(workflow.pk)
    return workflow


def due_ids(workflow, name):
    return list(
        Step.objects.filter(workflow=workflow, name=name, state__in=["ready", "waiting"])
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def due_now(step_ids):
    """As when their commands' results arrive: look now, not at the next poll."""
    Step.objects.filter(pk__in=step_ids).update(next_check_at=None)
    return step_ids


def selects_for(step_ids) -> int:
    with CaptureQueriesContext(connection) as ctx:
        results = runner.run_steps(step_ids)
    assert set(results) == set(step_ids)
    return sum(
        q["sql"].lstrip().upper().startswith("SELECT")
        and "ledger_link(" not in q["sql"]  # part of each audit write: its chain link
        for q in ctx.captured_queries
    )


def test_a_batch_reads_in_a_fixed_number_of_statements(in_service, agent, hw):
    """No N+1: reading two steps' rows or five costs the same statements; what grows with the
    batch is only each server's own writes (its command, its lifecycle row, its audit)."""
    small, large = started_upgrade(in_service[:2]), started_upgrade(in_service[2:])
    assert selects_for(due_ids(small, "drain")) == selects_for(due_ids(large, "drain"))
    answer_commands(agent, hw)  # drained: each drain hands over to its flash
    assert selects_for(due_now(due_ids(small, "drain"))) == selects_for(
        due_now(due_ids(large, "drain"))
    )


def test_a_finished_step_submits_the_next_in_the_same_commit(in_service, agent, hw):
    workflow = started_upgrade(in_service[:3])
    drains = due_ids(workflow, "drain")
    assert runner.run_steps(drains) == dict.fromkeys(drains, "wait")
    assert answer_commands(agent, hw) == 3
    assert runner.run_steps(due_now(drains)) == dict.fromkeys(drains, "done")
    for flash in Step.objects.filter(workflow=workflow, name="flash"):
        assert flash.state == "waiting" and flash.external_ref
        command = AgentCommand.objects.get(pk=flash.external_ref)
        assert (command.kind, command.state) == (CommandKind.FLASH_FIRMWARE, "queued")
    assert Step.objects.filter(workflow=workflow, name="drain", state="succeeded").count() == 3
    # the history keeps its order: the drain succeeded, then the flash was submitted
    kinds = list(
        workflow.events.filter(target=flash.target).order_by("at", "id").values_list("kind")
    )
    assert [k for (k,) in kinds][-2:] == ["step-succeeded", "submitted"]
    workflow = drive(workflow, agent, hw)
    assert workflow.state == "succeeded"
    assert max(hw.executed.values()) == 1


def test_a_step_that_breaks_its_batch_does_not_hold_back_the_others(in_service, agent, hw):
    """A drain whose awaited command is gone (purged by hand) raises; the batch is rolled back
    and each step runs alone: the others go on, the broken one keeps its lease, which expires
    and is counted like a lost worker."""
    workflow = started_upgrade(in_service[:3])
    drains = due_ids(workflow, "drain")
    runner.run_steps(drains)
    answer_commands(agent, hw)
    broken = Step.objects.get(pk=drains[1])
    AgentCommand.objects.filter(pk=broken.external_ref).delete()
    results = runner.run_steps(due_now(drains))
    assert results[drains[1]] == "error"
    assert results[drains[0]] == results[drains[2]] == "done"
    broken.refresh_from_db()
    assert broken.state == "running" and broken.lease_owner
    assert Step.objects.filter(pk__in=[drains[0], drains[2]], state="succeeded").count() == 2


def test_results_in_one_batch_are_all_or_nothing_and_wake_their_steps(
    fleet, in_service, django_capture_on_commit_callbacks
):
    site = fleet.sites["alpha"]
    agent, token = agents.issue_agent(site, "batching", CTX)
    workflow = started_upgrade(in_service[:3])
    runner.run_steps(due_ids(workflow, "drain"))
    claimed = agents.claim(agent, limit=10)
    assert len(claimed) == 3
    client = agent_token_client(token)
    url = gateway(wire.RESULTS_PATH)
    body = [{"id": str(c.pk), "ok": True, "result": {HardwareState.DRAINED: True}} for c in claimed]
    # one unknown command: nothing of the batch is recorded
    missing = {"id": str(uuid.uuid4()), "ok": True}
    assert_error_body(client.post(url, {"results": [*body, missing]}, format="json"), 404)
    assert AgentCommand.objects.filter(pk__in=[c.pk for c in claimed], state="claimed").count() == 3
    twice = assert_error_body(client.post(url, {"results": [body[0], body[0]]}, format="json"), 400)
    assert twice["errors"][0]["field"] == "results"
    for bad in ([], [{"id": "not-a-uuid", "ok": True}], [{"id": str(claimed[0].pk)}]):
        refused = assert_error_body(client.post(url, {"results": bad}, format="json"), 400)
        assert refused["errors"][0]["field"].startswith("results")
    # another site's command is not this agent's to answer: 404, and nothing recorded
    beta = fleet.sites["beta"]
    foreign = agents.submit(site_id=beta.pk, kind=CommandKind.RESET)
    other = {"id": str(foreign.pk), "ok": True}
    assert_error_body(client.post(url, {"results": [body[0], other]}, format="json"), 404)
    assert AgentCommand.objects.get(pk=foreign.pk).state == "queued"
    assert AgentCommand.objects.filter(pk__in=[c.pk for c in claimed], state="claimed").count() == 3
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"results": body}, format="json")
    assert response.status_code == 200, response.content
    assert {c["state"] for c in response.json()["commands"]} == {"succeeded"}
    # the waiting drains are due now, not at their next poll
    drains = Step.objects.filter(workflow=workflow, name="drain")
    assert not drains.filter(next_check_at__isnull=False).exists()
    # repeating the same report is harmless; a different outcome is a 409
    assert client.post(url, {"results": body}, format="json").status_code == 200
    changed = [{**body[0], "ok": False}]
    refused = assert_error_body(client.post(url, {"results": changed}, format="json"), 409)
    assert refused["errors"][0]["code"] == "command_finished"
    runner.run_steps(list(drains.values_list("pk", flat=True)))
    assert drains.filter(state="succeeded").count() == 3


def queued_hints(*, clear: bool = False) -> list[tuple[str, list]]:
    """The hints on this checkout's own test queue (no worker consumes it), oldest first."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        raw = client.lrange(settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1)
        if clear:
            client.delete(settings.CELERY_TASK_DEFAULT_QUEUE)
    finally:
        client.close()
    hints = []
    for message in reversed(raw):  # kombu pushes to the head
        envelope = json.loads(message)
        args = json.loads(base64.b64decode(envelope["body"]))[0]
        hints.append((envelope["headers"]["task"], args))
    return hints


def test_the_reconciler_batches_due_steps_but_sends_a_worker_killer_alone(
    in_service, django_capture_on_commit_callbacks
):
    workflow = started_upgrade(in_service)
    drains = due_ids(workflow, "drain")
    suspect = Step.objects.get(pk=drains[3])
    suspect.output = {"lost_leases": 1}
    suspect.save(update_fields=["output"])
    queued_hints(clear=True)
    with django_capture_on_commit_callbacks(execute=True):
        jobs.reconcile()
    steps = [(task, args) for task, args in queued_hints() if "run_step" in task]
    assert ("provisioning.run_step", [suspect.pk]) in steps
    others = [a for task, a in steps if task == "provisioning.run_steps"]
    assert others == [[[pk for pk in drains if pk != suspect.pk]]]
