"""Step definitions: what each step of a workflow does, one small class each.

A handler runs inside the engine's transaction, holding the step's row lock; everything it
writes (a queued agent command, a lifecycle change, the step's own output) commits together or
not at all. Hardware is reached only through the agent command queue: submit, wait, poll.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from factory.agents import services as agents
from factory.agents.choices import OPEN_STATES, CommandKind, CommandState
from factory.agents.models import AgentCommand
from factory.inventory.models import UltraServer
from provisioning.models import Step, Workflow, WorkflowTarget
from provisioning.outcomes import Done, Fail, Outcome, Wait
from provisioning.workflows.params import Param, ParamSet
from tenants.services.changes import ChangeContext

DEFAULT_POLL_SECONDS = 30.0
DEFAULT_COMMAND_TIMEOUT = 900
VERIFY_TRIES = 3

#: What every kind's hardware steps read from the spec.
HARDWARE_PARAMS = ParamSet(
    Param(
        "poll_seconds",
        float,
        "How often a step waiting for the site agent looks again, in seconds.",
        default=DEFAULT_POLL_SECONDS,
        minimum=0.1,
        maximum=3600,
        in_forms=False,
    ),
    Param(
        "command_timeout_seconds",
        int,
        "How long the site agent has to answer one command before it counts as lost (the "
        "step then reads the real state before any retry), in seconds.",
        default=DEFAULT_COMMAND_TIMEOUT,
        minimum=5,
        maximum=7 * 86400,
        in_forms=False,
    ),
)


@dataclass
class StepRun:
    """Everything a handler may look at; ``step.output`` is its durable scratch space."""

    step: Step
    workflow: Workflow
    target: WorkflowTarget | None
    server: UltraServer | None
    ctx: ChangeContext
    now: dt.datetime
    events: list[tuple[str, str]] = field(default_factory=list)
    #: The engine holds ``server``'s row lock (moves need not read it again).
    server_locked: bool = False
    #: Agent commands the engine read with the batch, by id (others are read when asked for).
    commands: dict[str, AgentCommand] = field(default_factory=dict)
    #: The steps of this server, as the engine holds them (outputs of earlier steps).
    siblings: list[Step] = field(default_factory=list)

    @property
    def spec(self) -> dict:
        return self.workflow.spec

    def note(self, kind: str, message: str) -> None:
        self.events.append((kind, message))

    def command(self, command_id: str) -> AgentCommand:
        command = self.commands.get(command_id)
        return command if command is not None else AgentCommand.objects.get(pk=command_id)

    def earlier_output(self, name: str) -> dict:
        """The output of this server's step ``name`` (e.g. what ``drain`` took it from)."""
        if self.siblings:
            return next((s.output for s in self.siblings if s.name == name), None) or {}
        found = (
            Step.objects.filter(target_id=self.step.target_id, name=name)
            .values_list("output", flat=True)
            .first()
        )
        return found or {}


@dataclass(frozen=True)
class StepSpec:
    name: str
    input: dict = field(default_factory=dict)


class StepDefinition:
    name: str = ""
    max_attempts: int = 3
    timeout_seconds: int | None = None  # the step's deadline, from its first run
    #: Planned only to undo a failed server's change (``WorkflowDefinition.compensation``).
    compensation_only: bool = False
    #: A manual step declares what a person hands it (``services.provide_input`` checks it).
    inputs: ParamSet | None = None

    def plan_input(self, workflow: Workflow, server: UltraServer) -> dict:
        """The step's input when it is planned for ``server``."""
        return {}

    def run(self, run: StepRun) -> Outcome:
        raise NotImplementedError


class HardwareStep(StepDefinition):
    """Submit a command to the site's agent, wait, poll; on failure read the real state with a
    ``query-state`` command before deciding anything, and retry only if it is not done."""

    command_kind: str = ""

    def params(self, run: StepRun) -> dict:
        return {}

    def before_submit(self, run: StepRun) -> Outcome | None:
        """Return an outcome to finish without touching hardware (e.g. nothing to drain)."""
        return None

    def already_done(self, run: StepRun, state: dict) -> bool:
        """Does the real hardware state show this step's effect? (Then no retry is needed.)"""
        return False

    def on_success(self, run: StepRun, result: dict) -> Outcome:
        return Done(result)

    # --- the template -----------------------------------------------------------------------

    def _poll(self, run: StepRun) -> float:
        return float(run.spec.get("poll_seconds", DEFAULT_POLL_SECONDS))

    def _submit(self, run: StepRun, kind: str, params: dict, phase: str) -> Wait:
        server = run.server
        command = agents.submit(
            site_id=run.workflow.site_id,
            ultraserver_id=server.pk if server else None,
            kind=kind,
            params=params,
            timeout_seconds=int(run.spec.get("command_timeout_seconds", DEFAULT_COMMAND_TIMEOUT)),
            requested_by=f"step:{run.step.pk}",
        )
        run.step.output["phase"] = phase
        run.step.output.setdefault("commands", []).append(str(command.id))
        return Wait(self._poll(run), f"{kind} sent to the site agent", external_ref=str(command.id))

    def run(self, run: StepRun) -> Outcome:
        step, out = run.step, run.step.output
        if not step.external_ref:
            early = self.before_submit(run)
            if early is not None:
                return early
            return self._submit(run, self.command_kind, self.params(run), phase="act")
        command = run.command(step.external_ref)
        if command.state in OPEN_STATES:
            return Wait(self._poll(run), f"waiting for {command.kind}")
        if out.get("phase") == "act":
            if command.state == CommandState.SUCCEEDED:
                return self.on_success(run, command.result or {})
            out["last_error"] = f"{command.kind} {command.state}" + (
                f": {command.error}" if command.error else ""
            )
            run.note("verify", f"{out['last_error']}; reading the real state before any retry")
            out["verify_tries"] = 0
            return self._submit(run, CommandKind.QUERY_STATE, {}, phase="verify")
        # phase == "verify": the answer to query-state
        if command.state != CommandState.SUCCEEDED:
            out["verify_tries"] = out.get("verify_tries", 0) + 1
            if out["verify_tries"] < VERIFY_TRIES:
                return self._submit(run, CommandKind.QUERY_STATE, {}, phase="verify")
            return Fail(
                f"{out.get('last_error', 'command failed')}; the hardware's state could not be "
                f"read ({command.kind} {command.state})",
                verified_state={"reachable": False},
            )
        state = command.result or {}
        out["verified_state"] = state
        if self.already_done(run, state):
            run.note("verified", "the real state shows the step took effect; not repeating it")
            return self.on_success(run, state)
        if step.attempt < step.max_attempts:
            step.attempt += 1
            run.note("retry", f"attempt {step.attempt} of {step.max_attempts}: real state verified")
            return self._submit(run, self.command_kind, self.params(run), phase="act")
        return Fail(
            f"{out.get('last_error', 'failed')} after {step.attempt} attempts", verified_state=state
        )
