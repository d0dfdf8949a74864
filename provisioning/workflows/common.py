"""Steps that more than one workflow uses."""

from __future__ import annotations

from factory.agents.choices import CommandKind
from factory.inventory import lifecycle
from factory.inventory.choices import ChipHealth
from factory.inventory.models import Chip
from factory.inventory.services import transition, transition_locked
from factory.wire import BurnInResult, CommandParam, HardwareState
from provisioning.outcomes import Done, Fail, Outcome
from provisioning.workflows.base import HardwareStep, StepRun
from provisioning.workflows.params import Param

#: What ``FlashFirmware`` installs (a deploy's baseline, an upgrade's target).
FIRMWARE_VERSION = Param(
    "firmware_version",
    str,
    "The firmware release to install: a release of every target's model. A deploy without "
    "one installs the model's baseline.",
    minimum=1,
    maximum=64,
)


def move(run: StepRun, wanted: str, **fields) -> None:
    """Lifecycle change of the step's server (whitelisted; raises InvalidTransition)."""
    if run.server_locked:  # the engine locked it with the batch: no second read
        run.server = transition_locked(run.server, wanted, run.ctx, fields=fields or None)
    else:
        run.server = transition(run.server.pk, wanted, run.ctx, fields=fields or None)


class FlashFirmware(HardwareStep):
    """SimpleUpdate to ``version``; done when the server reports it running that version."""

    name = "flash"
    command_kind = CommandKind.FLASH_FIRMWARE
    timeout_seconds = 4 * 3600

    def version(self, run: StepRun) -> str:
        return run.spec["firmware_version"]

    def params(self, run: StepRun) -> dict:
        return {
            CommandParam.VERSION: self.version(run),
            CommandParam.ORIGIN: run.spec.get("firmware_origin", ""),
        }

    def already_done(self, run: StepRun, state: dict) -> bool:
        return state.get(HardwareState.FIRMWARE_VERSION) == self.version(run)

    def on_success(self, run: StepRun, result: dict) -> Outcome:
        running = result.get(HardwareState.FIRMWARE_VERSION)
        if running != self.version(run):
            return Fail(
                f"flash reported success but the server runs {running!r}, not "
                f"{self.version(run)!r}",
                verified_state=result,
            )
        move(run, run.server.lifecycle_state, firmware_version=running)
        banks = {
            HardwareState.FIRMWARE_VERSION: running,
            HardwareState.INACTIVE_FIRMWARE_VERSION: result.get(
                HardwareState.INACTIVE_FIRMWARE_VERSION, ""
            ),
        }
        return Done(banks, f"{run.server.serial} runs {running}")


class BurnIn(HardwareStep):
    """Run burn-in; flag each chip that fails it. More failed chips than allowed fails the
    step (and, in a deploy, the server: burn-in-failed)."""

    name = "burn_in"
    command_kind = CommandKind.BURN_IN
    timeout_seconds = 12 * 3600
    quick = False
    clears_failed = True  # a full burn-in passing a chip clears its old failure
    allowed_key = "max_bad_chips"
    allowed_default = 0

    def params(self, run: StepRun) -> dict:
        return {CommandParam.QUICK: self.quick}

    def on_success(self, run: StepRun, result: dict) -> Outcome:
        bad = {
            int(c[BurnInResult.INDEX]): str(c.get(BurnInResult.DETAIL, "failed burn-in"))[:500]
            for c in result.get(BurnInResult.FAILED_CHIPS, [])
        }
        chips = Chip.objects.filter(ultraserver=run.server)
        for index, detail in bad.items():
            chips.filter(index=index).exclude(health=ChipHealth.FAILED).update(
                health=ChipHealth.FAILED, health_note=detail
            )
        if self.clears_failed:
            chips.filter(health=ChipHealth.FAILED).exclude(index__in=list(bad)).update(
                health=ChipHealth.OK, health_note="passed burn-in"
            )
        allowed = int(run.spec.get(self.allowed_key, self.allowed_default))
        summary = {
            BurnInResult.TESTED: result.get(BurnInResult.TESTED),
            BurnInResult.FAILED_CHIPS: sorted(bad),
        }
        if len(bad) > allowed:
            return Fail(
                f"{len(bad)} chips failed burn-in on {run.server.serial} (allowed {allowed}): "
                f"{sorted(bad)[:10]}",
                verified_state=result,
            )
        return Done(summary, f"{run.server.serial}: burn-in passed, {len(bad)} chips flagged")


class QuickHealthCheck(BurnIn):
    name = "health_check"
    quick = True
    clears_failed = False
    timeout_seconds = 3600
    allowed_key = "health_gate_max_failed_chips"


def drained_from(run: StepRun) -> str:
    """The lifecycle state the server left when its ``drain`` step took it out."""
    return run.earlier_output("drain").get("return_to", lifecycle.READY)


class Undrain(HardwareStep):
    """Return the server to the state it came from; back to scheduling if it served."""

    name = "restore"
    command_kind = CommandKind.UNDRAIN

    def return_to(self, run: StepRun) -> str:
        return drained_from(run)

    def before_submit(self, run: StepRun) -> Outcome | None:
        if self.return_to(run) != lifecycle.IN_SERVICE:
            move(run, self.return_to(run))
            return Done({}, f"{run.server.serial} is {self.return_to(run)}")
        return None

    def already_done(self, run: StepRun, state: dict) -> bool:
        return state.get(HardwareState.DRAINED) is False

    def on_success(self, run: StepRun, result: dict) -> Outcome:
        move(run, lifecycle.IN_SERVICE)
        return Done({}, f"{run.server.serial} back in service")
