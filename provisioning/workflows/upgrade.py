"""Rolling upgrade: canary, batches within failure-domain limits, soak, health gate, failure
budget, maintenance windows; a failed server boots its old firmware bank where it has one."""

from __future__ import annotations

from dataclasses import replace

from factory.agents.choices import CommandKind
from factory.inventory import lifecycle
from factory.inventory.models import UltraServer
from factory.wire import CommandParam, HardwareState
from provisioning.models import FirmwareRelease, Workflow
from provisioning.outcomes import Done, Fail, Outcome
from provisioning.workflows.base import HARDWARE_PARAMS, HardwareStep, StepRun, StepSpec
from provisioning.workflows.common import (
    FIRMWARE_VERSION,
    FlashFirmware,
    QuickHealthCheck,
    Undrain,
    move,
)
from provisioning.workflows.definition import ROLLOUT_PARAMS, WorkflowDefinition
from provisioning.workflows.params import Param, ParamSet

UPGRADABLE = frozenset({lifecycle.READY, lifecycle.IN_SERVICE})
#: How the agent reports a component whose inventory entries disagree: ``mixed:v1,v2``.
MIXED = "mixed:"

#: Units a rollout may have down at once (``provisioning.placement.lifecycle.unit_batch``).
MAX_UNAVAILABLE_UNITS = Param(
    "max_unavailable_units",
    int,
    "At most this many of a tenant's workload units down at once across the site, counting "
    "units with members out in other workflows (0: no limit). A unit's own max_unavailable "
    "decides how many of its members go together; a started unit may take a batch beyond "
    "batch_size.",
    default=1,
    minimum=0,
    maximum=1000,
    label="Max unavailable units",
)

UPGRADE_PARAMS = ParamSet(
    replace(
        FIRMWARE_VERSION,
        required=True,
        help="The firmware release to install: a release of every target's model.",
    ),
    Param(
        "canary_size",
        int,
        "UltraServers upgraded first, alone, before any batch (0: no canary).",
        default=1,
        minimum=0,
        maximum=1000,
    ),
    *ROLLOUT_PARAMS.with_defaults(
        batch_size=10,
        max_unavailable_per_domain=1,
        soak_seconds=300,
        health_gate_max_failed_chips=0,
        max_failures=1,
        max_failure_pct=10.0,
    ),
    MAX_UNAVAILABLE_UNITS,
    Param(
        "rollback",
        bool,
        "A server whose flash or health check fails boots its other firmware bank (the version "
        "it ran before).",
        default=True,
        label="Roll back failed servers",
    ),
    Param(
        "proposed_for",
        str,
        "Set by the firmware compliance scan: the maintenance window (site-local start) it "
        "proposed this upgrade for.",
        maximum=32,
        in_forms=False,
    ),
    *HARDWARE_PARAMS,
)


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
        return state.get(HardwareState.DRAINED) is True

    def on_success(self, run: StepRun, result: dict) -> Outcome:
        move(run, lifecycle.UPGRADING)
        return Done({"return_to": lifecycle.IN_SERVICE}, f"{run.server.serial} drained")


def release_of(run: StepRun) -> FirmwareRelease | None:
    """The release this workflow installs on ``run``'s server (its model's)."""
    return (
        FirmwareRelease.objects.select_related("model")
        .filter(model_id=run.server.model_id, version=run.spec["firmware_version"])
        .first()
    )


def image_params(run: StepRun) -> dict:
    """The server's model's image: its origin (part of the URI) and the digest the agent must
    find before it flashes, the one recorded when the release's signature was verified at
    creation (``firmware_origins``, ``firmware_sha256``: per model)."""
    model = str(run.server.model_id)
    origin = (run.spec.get("firmware_origins") or {}).get(model)
    digest = (run.spec.get("firmware_sha256") or {}).get(model)
    return {
        **({CommandParam.ORIGIN: origin} if origin else {}),
        **({CommandParam.DIGEST: digest} if digest else {}),
    }


class UpgradeFlash(FlashFirmware):
    """Flash the new version, noting the one it replaces (what a rollback boots)."""

    def params(self, run: StepRun) -> dict:
        return {**super().params(run), **image_params(run)}

    def plan_input(self, workflow: Workflow, server: UltraServer) -> dict:
        return {"from_version": server.firmware_version}

    def on_success(self, run: StepRun, result: dict) -> Outcome:
        """As a flash, then the bundle's components: when the agent read the BMC's firmware
        inventory back, every component the release names must run the release's version
        (a bundle can report the new version while one tray kept its old firmware). For
        a release that names components, a result without an inventory fails verification:
        an unread component is not a verified one. A component whose entries disagree comes
        as ``mixed:v1,v2`` (the agent's word for it), which no bundle version is."""
        release = FirmwareRelease.objects.filter(
            model_id=run.server.model_id, version=self.version(run)
        ).first()
        components = release.components if release else {}
        if components:
            inventory = result.get(HardwareState.FIRMWARE_INVENTORY)
            if not isinstance(inventory, dict):
                return Fail(
                    f"{run.server.serial}: the result carries no {HardwareState.FIRMWARE_INVENTORY}"
                    f"; firmware {self.version(run)} names components "
                    f"({', '.join(sorted(components))}) that cannot be verified without it",
                    verified_state=result,
                )
            for component, wanted in sorted(components.items()):
                found = inventory.get(component)
                if found != wanted or str(found).startswith(MIXED):
                    return Fail(
                        f"{run.server.serial}: component {component} runs {found!r}, not "
                        f"{wanted!r} of firmware {self.version(run)}",
                        verified_state=result,
                    )
        return super().on_success(run, result)


class Restore(Undrain):
    """Back to where the drain took it from: in service (undrained), or ready."""


class Rollback(HardwareStep):
    """Boot the other bank, which holds the version the server ran before."""

    name = "rollback"
    command_kind = CommandKind.ACTIVATE_BANK
    compensation_only = True

    def params(self, run: StepRun) -> dict:
        return {CommandParam.VERSION: run.step.input["version"]}

    def already_done(self, run: StepRun, state: dict) -> bool:
        return state.get(HardwareState.FIRMWARE_VERSION) == run.step.input["version"]

    def on_success(self, run: StepRun, result: dict) -> Outcome:
        running = result.get(HardwareState.FIRMWARE_VERSION)
        if running != run.step.input["version"]:
            return Fail(f"rollback left {running!r} running", verified_state=result)
        move(run, run.server.lifecycle_state, firmware_version=running)
        banks = {HardwareState.FIRMWARE_VERSION: running}
        return Done(banks, f"{run.server.serial} rolled back to {running}")


class RestoreAfterRollback(Restore):
    name = "restore_after_rollback"
    compensation_only = True


class UpgradeDefinition(WorkflowDefinition):
    kind = "upgrade"
    steps = (
        Drain(),
        UpgradeFlash(),
        QuickHealthCheck(),
        Restore(),
        Rollback(),
        RestoreAfterRollback(),
    )
    spec_params = UPGRADE_PARAMS

    def compensation(self, run: StepRun, failure: Fail) -> list[StepSpec]:
        flash = UpgradeFlash.name
        if not run.spec.get("rollback", True) or run.step.name not in (
            flash,
            QuickHealthCheck.name,
        ):
            return []
        from provisioning.models import Step

        flash_input, flash_output = Step.objects.filter(
            target_id=run.step.target_id, name=flash
        ).values_list("input", "output")[0]
        previous = flash_input.get("from_version")
        # The banks as last seen: read after the failed flash, or reported by the flash.
        state = (failure.verified_state if run.step.name == flash else flash_output) or {}
        # A/B banked: the other bank still holds the version it ran before.
        if previous and state.get(HardwareState.INACTIVE_FIRMWARE_VERSION) == previous:
            return [
                StepSpec(Rollback.name, {"version": previous}),
                StepSpec(RestoreAfterRollback.name),
            ]
        running = state.get(HardwareState.FIRMWARE_VERSION)
        if previous and running == previous and run.step.name == flash:
            # The flash never took: the old version still runs; just put the server back.
            return [StepSpec(RestoreAfterRollback.name)]
        return []

    def respects_windows(self, workflow) -> bool:
        return True

    def canary_size(self, workflow: Workflow) -> int:
        return int(workflow.spec.get("canary_size", self.spec_params["canary_size"].default))


UPGRADE = UpgradeDefinition()
