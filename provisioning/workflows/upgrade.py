"""Rolling upgrade: canary, batches within failure-domain limits, soak, health gate, failure
budget, maintenance windows; a failed server boots its old firmware bank where it has one."""

from __future__ import annotations

from factory.agents.choices import CommandKind
from factory.inventory import lifecycle
from provisioning.outcomes import Done, Fail, Outcome
from provisioning.workflows.base import HardwareStep, StepRun, StepSpec
from provisioning.workflows.common import FlashFirmware, QuickHealthCheck, Undrain, move
from provisioning.workflows.definition import WorkflowDefinition

UPGRADABLE = frozenset({lifecycle.READY, lifecycle.IN_SERVICE})


class Drain(HardwareStep):
    """Take the server out of scheduling: a serving one is drained first; an idle one just
    moves to upgrading."""

    name = "drain"
    command_kind = CommandKind.DRAIN
    timeout_seconds = 2 * 3600

    def before_submit(self, run: StepRun) -> Outcome | None:
        state = run.server.lifecycle_state
        if state == lifecycle.IN_SERVICE:
            move(run, lifecycle.DRAINING)
            return None
        if state == lifecycle.DRAINING:
            return None
        move(run, lifecycle.UPGRADING)
        return Done({"return_to": state}, f"{run.server.serial} was {state}: nothing to drain")

    def already_done(self, run: StepRun, state: dict) -> bool:
        return state.get("drained") is True

    def on_success(self, run: StepRun, result: dict) -> Outcome:
        move(run, lifecycle.UPGRADING)
        return Done({"return_to": lifecycle.IN_SERVICE}, f"{run.server.serial} drained")


class Restore(Undrain):
    """Back to where the drain took it from: in service (undrained), or ready."""


class Rollback(HardwareStep):
    """Boot the other bank, which holds the version the server ran before."""

    name = "rollback"
    command_kind = CommandKind.ACTIVATE_BANK
    compensation_only = True

    def params(self, run: StepRun) -> dict:
        return {"version": run.step.input["version"]}

    def already_done(self, run: StepRun, state: dict) -> bool:
        return state.get("firmware_version") == run.step.input["version"]

    def on_success(self, run: StepRun, result: dict) -> Outcome:
        running = result.get("firmware_version")
        if running != run.step.input["version"]:
            return Fail(f"rollback left {running!r} running", verified_state=result)
        move(run, run.server.lifecycle_state, firmware_version=running)
        return Done({"firmware_version": running}, f"{run.server.serial} rolled back to {running}")


class RestoreAfterRollback(Restore):
    name = "restore_after_rollback"
    compensation_only = True


class UpgradeDefinition(WorkflowDefinition):
    kind = "upgrade"
    steps = (
        Drain(),
        FlashFirmware(),
        QuickHealthCheck(),
        Restore(),
        Rollback(),
        RestoreAfterRollback(),
    )

    def plan(self, workflow, server) -> list[StepSpec]:
        return [
            StepSpec("drain"),
            StepSpec("flash", {"from_version": server.firmware_version}),
            StepSpec("health_check"),
            StepSpec("restore"),
        ]

    def compensation(self, run: StepRun, failure: Fail) -> list[StepSpec]:
        if not run.spec.get("rollback", True) or run.step.name not in ("flash", "health_check"):
            return []
        from provisioning.models import Step

        flash_input, flash_output = Step.objects.filter(
            target_id=run.step.target_id, name="flash"
        ).values_list("input", "output")[0]
        previous = flash_input.get("from_version")
        # The banks as last seen: read after the failed flash, or reported by the flash.
        state = (failure.verified_state if run.step.name == "flash" else flash_output) or {}
        # A/B banked: the other bank still holds the version it ran before.
        if previous and state.get("inactive_firmware_version") == previous:
            return [StepSpec("rollback", {"version": previous}), StepSpec("restore_after_rollback")]
        if previous and state.get("firmware_version") == previous and run.step.name == "flash":
            # The flash never took: the old version still runs; just put the server back.
            return [StepSpec("restore_after_rollback")]
        return []

    def respects_windows(self, workflow) -> bool:
        return True

    def canary_size(self, workflow) -> int:
        return int(workflow.spec.get("canary_size", 1))


UPGRADE = UpgradeDefinition()
