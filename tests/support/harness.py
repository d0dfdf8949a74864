"""Driving workflows in-process, step by step, for the step-logic tests (the fault tests use
real workers instead)."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from factory.agents import services as agents
from factory.agents.models import AgentCommand
from provisioning import rollout, runner
from provisioning.choices import FINISHED_WORKFLOW_STATES, StepState
from provisioning.models import Step, Workflow
from tests.support.hardware import SimHardware


def answer_commands(agent, hw: SimHardware) -> int:
    done = 0
    for command in agents.claim(agent, limit=100):
        serial = command.ultraserver.serial if command.ultraserver_id else None
        outcome = hw.execute(str(command.id), command.kind, serial, command.params)
        if outcome is None:
            continue
        ok, result, error = outcome
        agents.complete(agent, command.id, ok=ok, result=result, error=error)
        done += 1
    return done


def expire_lost_commands() -> int:
    """Let time pass for claimed commands whose result never came."""
    AgentCommand.objects.filter(state="claimed").update(
        result_due_at=timezone.now() - dt.timedelta(seconds=1)
    )
    return agents.expire_overdue()


def run_due_steps(workflow_id: int) -> int:
    Step.objects.filter(
        workflow_id=workflow_id, state__in=[StepState.READY, StepState.WAITING]
    ).update(next_check_at=None)
    ran = 0
    for step_id in Step.objects.filter(
        workflow_id=workflow_id, state__in=[StepState.READY, StepState.WAITING]
    ).values_list("pk", flat=True):
        runner.run_step(step_id)
        ran += 1
    return ran


def drive(workflow: Workflow, agent, hw: SimHardware, rounds: int = 60) -> Workflow:
    """Alternate agent, steps and workflow advance until the workflow finishes or stalls."""
    for _ in range(rounds):
        answer_commands(agent, hw)
        run_due_steps(workflow.pk)
        answer_commands(agent, hw)
        expire_lost_commands()
        rollout.advance(workflow.pk)
        workflow.refresh_from_db()
        if workflow.state in FINISHED_WORKFLOW_STATES or workflow.state == "paused":
            return workflow
    return workflow
