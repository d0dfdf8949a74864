"""Maintain: drain (tenant told; capacity floor kept), technician dispatch (sovereignty: personnel
rules and the customer's approval), part replacement / RMA, verify, return to service."""

from __future__ import annotations

from dataclasses import replace

from django.contrib.auth import get_user_model

from factory.agents.choices import CommandKind
from factory.inventory import lifecycle
from factory.inventory.models import UltraServer
from factory.telemetry import faults
from factory.wire import CommandParam, HardwareState
from provisioning.models import Notification, PartReplacement, Workflow
from provisioning.outcomes import Done, Outcome, Wait
from provisioning.workflows.base import HARDWARE_PARAMS, HardwareStep, StepDefinition, StepRun
from provisioning.workflows.common import QuickHealthCheck, Undrain, move
from provisioning.workflows.definition import ROLLOUT_PARAMS, WorkflowDefinition
from provisioning.workflows.params import Param, ParamSet
from tenants.sovereignty import services as sovereignty

MANUAL_POLL_SECONDS = 3600.0

TECHNICIAN = Param(
    "technician",
    int,
    "The provider technician to dispatch (a user id); the sovereignty engine decides whether "
    "that person may act on this site.",
    minimum=1,
)
FROM_COUNTRY = Param(
    "from_country",
    str,
    "Where the technician acts from (ISO 3166 alpha-2 country code).",
    minimum=2,
    maximum=2,
)


class MaintainDrain(HardwareStep):
    name = "drain"
    command_kind = CommandKind.DRAIN
    timeout_seconds = 2 * 3600

    def before_submit(self, run: StepRun) -> Outcome | None:
        server = run.server
        Notification.objects.create(
            tenant_id=run.workflow.site.tenant_id,
            site_id=run.workflow.site_id,
            workflow=run.workflow,
            kind="drain",
            message=f"{server.serial} is being taken out of service for maintenance: "
            f"{run.workflow.reason or 'scheduled'}",
        )
        if server.isolated_since is not None:
            # A leak powered it off at once (factory.telemetry.isolation): nothing runs on it
            # and the agent may not touch it until the repair, so there is nothing to drain.
            returning = (
                lifecycle.IN_SERVICE
                if server.lifecycle_state in (lifecycle.IN_SERVICE, lifecycle.DRAINING)
                else lifecycle.READY
            )
            if server.lifecycle_state == lifecycle.IN_SERVICE:
                move(run, lifecycle.DRAINING)  # the only way out of service (lifecycle.py)
            if server.lifecycle_state != lifecycle.MAINTENANCE:
                move(run, lifecycle.MAINTENANCE, in_maintenance=True)
            return Done(
                {"return_to": returning, "isolated": True},
                f"{server.serial}: isolated after a leak (powered off); nothing to drain",
            )
        if server.lifecycle_state == lifecycle.IN_SERVICE:
            move(run, lifecycle.DRAINING)
            return None
        if server.lifecycle_state == lifecycle.DRAINING:
            return None
        returning = server.lifecycle_state if server.lifecycle_state == lifecycle.READY else None
        if server.lifecycle_state != lifecycle.MAINTENANCE:
            move(run, lifecycle.MAINTENANCE, in_maintenance=True)
        return Done({"return_to": returning or lifecycle.READY}, f"{server.serial}: in maintenance")

    def already_done(self, run: StepRun, state: dict) -> bool:
        return state.get(HardwareState.DRAINED) is True

    def on_success(self, run: StepRun, result: dict) -> Outcome:
        move(run, lifecycle.MAINTENANCE, in_maintenance=True)
        return Done({"return_to": lifecycle.IN_SERVICE}, f"{run.server.serial} drained")


class Dispatch(StepDefinition):
    """Waits for a technician to be assigned (``input``), then asks the sovereignty engine
    whether that person may act on this site now. A denial is recorded and the step waits for
    someone who may."""

    name = "dispatch"
    inputs = ParamSet(
        replace(TECHNICIAN, required=True),
        FROM_COUNTRY,
        Param("remote", bool, "The technician acts remotely, not on site.", default=False),
    )

    def plan_input(self, workflow: Workflow, server: UltraServer) -> dict:
        """A technician named in the spec is the first one asked for."""
        if not workflow.spec.get(TECHNICIAN.name):
            return {}
        return {
            TECHNICIAN.name: workflow.spec[TECHNICIAN.name],
            FROM_COUNTRY.name: workflow.spec.get(FROM_COUNTRY.name, ""),
        }

    def run(self, run: StepRun) -> Outcome:
        data = run.step.input
        if not data.get("technician"):
            return Wait(MANUAL_POLL_SECONDS, "awaiting a technician assignment")
        person = get_user_model().objects.filter(pk=data["technician"]).first()
        if person is None:
            run.step.input = {}
            return Wait(MANUAL_POLL_SECONDS, "assigned technician does not exist")
        try:
            sovereignty.check_site_access(
                person,
                run.workflow.site,
                run.ctx,
                from_country=data.get("from_country", ""),
                remote=bool(data.get("remote", False)),
            )
        except sovereignty.SovereigntyDenied as denied:
            rules = ", ".join(denied.decision.rule_ids) or "default deny"
            reasons = "; ".join(denied.decision.reasons)
            run.note("dispatch-denied", f"{person.username} may not act here ({rules}): {reasons}")
            run.step.output["denied"] = [*run.step.output.get("denied", []), person.username]
            run.step.input = {}
            run.step.save(update_fields=["input"])
            return Wait(MANUAL_POLL_SECONDS, "dispatch denied; assign someone who may")
        return Done({"technician": person.username}, f"{person.username} dispatched")


class Repair(StepDefinition):
    """Done when the technician has recorded the part replacement (or that none was needed)."""

    name = "repair"
    inputs = ParamSet(
        Param(
            "no_parts_needed",
            bool,
            "The repair is done without replacing a part (otherwise record the part replacement).",
            required=True,
        )
    )

    def run(self, run: StepRun) -> Outcome:
        parts = list(
            PartReplacement.objects.filter(
                workflow=run.workflow, ultraserver=run.server
            ).values_list("part", "rma_number")
        )
        if parts or run.step.input.get("no_parts_needed"):
            return Done({"parts": [{"part": p, "rma": r} for p, r in parts]}, "repair recorded")
        return Wait(MANUAL_POLL_SECONDS, "awaiting the part replacement record")


class PowerOn(HardwareStep):
    """After a leak's repair: the leak fault closes (so the isolation lifts) and the server is
    powered on again for the verification. A server that was not isolated is left alone."""

    name = "power_on"
    command_kind = CommandKind.RESET

    def params(self, run: StepRun) -> dict:
        return {CommandParam.RESET_TYPE: "On"}

    def before_submit(self, run: StepRun) -> Outcome | None:
        if not run.earlier_output("drain").get("isolated"):
            return Done({}, "not isolated: power left as it is")
        faults.clear_isolating(
            run.server.pk, f"leak repaired by maintain workflow #{run.workflow.pk}"
        )
        return None

    def already_done(self, run: StepRun, state: dict) -> bool:
        return state.get(HardwareState.POWER_STATE) == "On"

    def on_success(self, run: StepRun, result: dict) -> Outcome:
        return Done({}, f"{run.server.serial} powered on after the leak repair")


class Verify(QuickHealthCheck):
    name = "verify"
    clears_failed = True  # the part was replaced: a passing chip is healthy again
    allowed_key = "max_bad_chips_after_repair"


class ReturnToService(Undrain):
    name = "return_to_service"

    def before_submit(self, run: StepRun) -> Outcome | None:
        if self.return_to(run) != lifecycle.IN_SERVICE:
            move(run, lifecycle.READY, in_maintenance=False, fault_reason="")
            faults.clear_server(run.server.pk, f"repaired by maintain workflow #{run.workflow.pk}")
            return Done({}, f"{run.server.serial} is ready")
        return None

    def on_success(self, run: StepRun, result: dict) -> Outcome:
        move(run, lifecycle.IN_SERVICE, in_maintenance=False, fault_reason="")
        faults.clear_server(run.server.pk, f"repaired by maintain workflow #{run.workflow.pk}")
        return Done({}, f"{run.server.serial} back in service")


class MaintainDefinition(WorkflowDefinition):
    kind = "maintain"
    steps = (MaintainDrain(), Dispatch(), Repair(), PowerOn(), Verify(), ReturnToService())
    spec_params = ParamSet(
        Param(
            "scheduled",
            bool,
            "Planned maintenance: it waits for an approved maintenance window (a fault does "
            "not wait).",
            default=False,
        ),
        replace(
            TECHNICIAN,
            help=f"{TECHNICIAN.help} Without one, the dispatch step waits for an assignment.",
        ),
        FROM_COUNTRY,
        Param(
            Verify.allowed_key,
            int,
            "Failed chips the verification after the repair may find and still return the server.",
            default=0,
            minimum=0,
            maximum=1000,
        ),
        *ROLLOUT_PARAMS,
        *HARDWARE_PARAMS,
    )

    def respects_windows(self, workflow) -> bool:
        # A fault is urgent: the server is already out. Planned maintenance waits for a window.
        return bool(workflow.spec.get("scheduled"))


MAINTAIN = MaintainDefinition()
