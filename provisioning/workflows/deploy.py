"""Deploy: checks (power, cooling, position; sovereignty), install and cable, firmware baseline,
burn-in, interconnect validation, handover → ready."""

from __future__ import annotations

from factory.agents.choices import CommandKind
from factory.inventory import lifecycle
from factory.inventory.selectors import placement_problems
from factory.wire import CommandParam, HardwareState, InterconnectResult
from provisioning.outcomes import Done, Fail, Outcome
from provisioning.workflows.base import HARDWARE_PARAMS, HardwareStep, StepDefinition, StepRun
from provisioning.workflows.common import FIRMWARE_VERSION, BurnIn, FlashFirmware, move
from provisioning.workflows.definition import ROLLOUT_PARAMS, WorkflowDefinition
from provisioning.workflows.params import Param, ParamSet
from provisioning.workflows.upgrade import image_params, release_of
from tenants.sovereignty import services as sovereignty


class Preflight(StepDefinition):
    """Everything that can be known before anyone lifts a server: it fits (power, cooling,
    rack units), and the tenant's sovereignty rules allow the firmware and the workload here."""

    name = "preflight"
    max_attempts = 1

    def run(self, run: StepRun) -> Outcome:
        server = run.server
        if server.rack_id is None:
            return Fail(f"{server.serial} has no rack position: place it before deploying")
        server.lock_for_change()
        problems = placement_problems(server)
        if problems:
            return Fail("; ".join(message for _, _, message in problems))
        site = run.workflow.site
        release = release_of(run)
        if release is None:
            return Fail(f"firmware {run.spec['firmware_version']} is no release of this model")
        try:
            # Again, now: a trust root revoked since the workflow was created no longer vouches.
            sovereignty.check_release(site, release, run.ctx)
            # Before any capacity is given to the workload; an input it cannot check is a deny.
            sovereignty.check_workload_inputs(run.spec.get("inputs", []), site, run.ctx)
        except sovereignty.SovereigntyDenied as denied:
            rules = ", ".join(denied.decision.rule_ids) or "default deny"
            return Fail(f"sovereignty denied ({rules}): {'; '.join(denied.decision.reasons)}")
        return Done({}, f"{server.serial}: fits, and the tenant's rules allow it here")


class Install(HardwareStep):
    name = "install"
    command_kind = CommandKind.INSTALL_CHECK
    timeout_seconds = 7 * 24 * 3600  # people rack and cable it

    def params(self, run: StepRun) -> dict:
        return {CommandParam.RACK: run.server.rack.name, CommandParam.POSITION: run.server.position}

    def before_submit(self, run: StepRun) -> Outcome | None:
        if run.server.lifecycle_state != lifecycle.INSTALLING:
            move(run, lifecycle.INSTALLING)
        return None

    def already_done(self, run: StepRun, state: dict) -> bool:
        return bool(state.get(HardwareState.CABLED))

    def on_success(self, run: StepRun, result: dict) -> Outcome:
        if not result.get(HardwareState.CABLED):
            return Fail("the agent reports the server is not cabled", verified_state=result)
        return Done(result, f"{run.server.serial} installed and cabled")


class Baseline(FlashFirmware):
    name = "firmware"

    def params(self, run: StepRun) -> dict:
        return {**super().params(run), **image_params(run)}


class DeployBurnIn(BurnIn):
    def before_submit(self, run: StepRun) -> Outcome | None:
        if run.server.lifecycle_state != lifecycle.BURN_IN:
            move(run, lifecycle.BURN_IN)
        return None


class Interconnect(HardwareStep):
    name = "interconnect"
    command_kind = CommandKind.INTERCONNECT_CHECK

    def on_success(self, run: StepRun, result: dict) -> Outcome:
        down = result.get(InterconnectResult.LINKS_DOWN, [])
        if down:
            return Fail(f"{len(down)} interconnect links down: {down[:10]}", verified_state=result)
        up = result.get(InterconnectResult.LINKS_OK, 0)
        return Done(result, f"{run.server.serial}: {up} links up")


class Handover(StepDefinition):
    name = "handover"

    def run(self, run: StepRun) -> Outcome:
        move(run, lifecycle.READY)
        return Done({}, f"{run.server.serial} handed over: ready")


class DeployDefinition(WorkflowDefinition):
    kind = "deploy"
    steps = (Preflight(), Install(), Baseline(), DeployBurnIn(), Interconnect(), Handover())
    spec_params = ParamSet(
        FIRMWARE_VERSION,
        Param(
            DeployBurnIn.allowed_key,
            int,
            "Chips that may fail burn-in (they are flagged) before the server fails it.",
            default=2,
            minimum=0,
            maximum=1000,
        ),
        Param(
            "inputs",
            list,
            "Protected assets (ids) the workload here will use: the tenant's co-location "
            "rules must allow them at this site.",
            item=Param("asset", int, "A protected asset's id.", minimum=1),
            maximum=100,
            in_forms=False,
        ),
        *ROLLOUT_PARAMS,
        *HARDWARE_PARAMS,
    )


DEPLOY = DeployDefinition()
