"""Maintain: drain (tenant told; capacity floor kept), technician dispatch (sovereignty: personnel
rules and the customer's approval), part replacement / RMA, verify, return to service."""

from __future__ import annotations

from dataclasses import replace

from django.contrib.auth import get_user_model
from django.utils import timezone

from factory.agents.choices import CommandKind
from factory.inventory import lifecycle
from factory.inventory.models import UltraServer
from factory.telemetry import faults
from factory.wire import CommandParam, HardwareState
from provisioning.choices import StepState
from provisioning.models import Notification, PartReplacement, Step, Workflow
from provisioning.outcomes import Done, Outcome, Wait
from provisioning.workflows.base import HARDWARE_PARAMS, HardwareStep, StepDefinition, StepRun
from provisioning.workflows.common import QuickHealthCheck, Undrain, move
from provisioning.workflows.definition import ROLLOUT_PARAMS, WorkflowDefinition
from provisioning.workflows.params import PERSON_TIMEOUT, Param, ParamSet
from provisioning.workflows.upgrade import MAX_UNAVAILABLE_UNITS
from tenants.sovereignty import services as sovereignty
from tenants.sovereignty.services.access import ACCESS_ENDED

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

REMOTE = Param("remote", bool, "The technician acts remotely, not on site.", default=False)
OFFICE_COUNTRY = Param(
    "office_country",
    str,
    "The country of the technician's office (ISO 3166 alpha-2), if the lockbox policy asks.",
    minimum=2,
    maximum=2,
)
ACCESS_REQUEST = Param(
    "access_request",
    int,
    "The lockbox grant the technician acts under (an access request id); without it the "
    "dispatch finds a grant covering person, site, scope and now.",
    minimum=1,
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
        REMOTE,
        OFFICE_COUNTRY,
        ACCESS_REQUEST,
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
        dispatched, refusal = _dispatch(run, data)
        if dispatched is None:
            run.step.input = {}
            run.step.save(update_fields=["input"])
            return Wait(MANUAL_POLL_SECONDS, refusal)
        return Done(dispatched, f"{dispatched['technician']} dispatched")


def _dispatch(run: StepRun, data: dict) -> tuple[dict | None, str]:
    """Ask the sovereignty engine whether the person named in ``data`` may act on this site now
    (the lockbox: a grant covering person, site, scope, location and now, when the tenant's
    rules need one). ``(what the later steps re-check, "")``, or ``(None, why not)`` with the
    denial noted (and recorded by the engine)."""
    person = get_user_model().objects.filter(pk=data["technician"]).first()
    if person is None:
        return None, "assigned technician does not exist"
    try:
        _, grant = sovereignty.site_access(
            person,
            run.workflow.site,
            run.ctx,
            from_country=data.get("from_country", ""),
            remote=bool(data.get("remote", False)),
            office_country=data.get("office_country", ""),
            grant_id=data.get("access_request") or None,
            workflow_id=run.workflow.pk,
            step=run.step.name,
        )
    except sovereignty.SovereigntyDenied as denied:
        rules = ", ".join(denied.decision.rule_ids) or "default deny"
        reasons = "; ".join(denied.decision.reasons)
        why = f"{person.username} may not act here ({rules}): {reasons}"
        run.note("dispatch-denied", why)
        run.step.output["denied"] = [*run.step.output.get("denied", []), person.username]
        run.step.output["last_denial"] = why[:500]  # what ``attention.needs_action`` shows
        return None, "dispatch denied; assign someone who may"
    return {
        "technician": person.username,
        "technician_id": person.pk,
        "from_country": data.get("from_country", ""),
        "remote": bool(data.get("remote", False)),
        "office_country": data.get("office_country", ""),
        "access_request": grant.pk if grant is not None else None,
    }, ""


def _access_still_valid(run: StepRun, dispatched: dict) -> str | None:
    """The dispatched person's access, checked again now (revoked, expired or ended grants and
    rules that now deny all stop the work): ``None`` when it holds, else why not. The check is
    recorded (a decision, and a use of the grant)."""
    users = get_user_model().objects
    if dispatched.get("technician_id"):
        person = users.filter(pk=dispatched["technician_id"]).first()
    elif dispatched.get("technician"):  # dispatched before the id was recorded: by username
        person = users.filter(username=dispatched["technician"]).first()
    else:  # fail closed: nobody to re-check means nobody may go on working
        return "the dispatch records no technician"
    if person is None:
        return "the dispatched technician no longer exists"
    grant_id = dispatched.get("access_request")
    try:
        _, grant = sovereignty.site_access(
            person,
            run.workflow.site,
            run.ctx,
            from_country=dispatched.get("from_country", ""),
            remote=bool(dispatched.get("remote", False)),
            office_country=dispatched.get("office_country", ""),
            grant_id=grant_id,
            workflow_id=run.workflow.pk,
            step=run.step.name,
        )
    except sovereignty.SovereigntyDenied as denied:
        reasons = "; ".join(denied.decision.reasons) or "denied"
        if grant_id:
            return f"access request #{grant_id} no longer covers {person.username}: {reasons}"
        return f"{person.username} may no longer act here: {reasons}"
    if grant_id and grant is None:
        return f"access request #{grant_id} no longer covers {person.username} (revoked or over)"
    return None


class Repair(StepDefinition):
    """Done when the technician has recorded the part replacement (or that none was needed),
    while their access still holds: it is checked again each time the step runs. When it no
    longer does (the tenant revoked it, it expired or ended) the step stops and waits for a new
    dispatch, handed to this step (``technician``, ``from_country``, ...)."""

    name = "repair"
    inputs = ParamSet(
        Param(
            "no_parts_needed",
            bool,
            "The repair is done without replacing a part (otherwise record the part replacement).",
        ),
        replace(
            TECHNICIAN,
            help="A new dispatch, after the dispatched person's access ended: the technician.",
        ),
        FROM_COUNTRY,
        REMOTE,
        OFFICE_COUNTRY,
        ACCESS_REQUEST,
    )

    def run(self, run: StepRun) -> Outcome:
        data = run.step.input
        if data.get("technician"):  # a new dispatch, after the access ended
            dispatched, refusal = _dispatch(run, data)
            run.step.input = {k: v for k, v in data.items() if k == "no_parts_needed"}
            run.step.save(update_fields=["input"])
            if dispatched is None:
                return Wait(MANUAL_POLL_SECONDS, refusal)
            run.step.output["dispatched"] = dispatched
            run.step.output.pop("access_ended", None)
            run.note("redispatched", f"{dispatched['technician']} dispatched")
        dispatched = run.step.output.get("dispatched") or run.earlier_output("dispatch")
        if run.step.output.get("access_ended"):
            return Wait(
                MANUAL_POLL_SECONDS, f"{run.step.output['access_ended']}: awaiting a new dispatch"
            )
        ended = _access_still_valid(run, dispatched)
        if ended:
            run.note("access-ended", ended)
            run.step.output["access_ended"] = ended
            return Wait(MANUAL_POLL_SECONDS, f"{ended}: awaiting a new dispatch")
        parts = list(
            PartReplacement.objects.filter(
                workflow=run.workflow, ultraserver=run.server
            ).values_list("part", "rma_number")
        )
        if parts or data.get("no_parts_needed"):
            return Done({"parts": [{"part": p, "rma": r} for p, r in parts]}, "repair recorded")
        return Wait(MANUAL_POLL_SECONDS, "awaiting the part replacement record")


def recheck_repairs(sender, access, **kwargs) -> None:
    """A grant was revoked or ended: the repair steps waiting at its site run again at once,
    so work under it stops now, not at the next poll (hinted after the commit)."""
    from provisioning.queue import queue_steps

    steps = Step.objects.filter(
        name=Repair.name,
        state=StepState.WAITING,
        workflow__kind="maintain",
        workflow__site_id=access.site_id,
    )
    step_ids = list(steps.values_list("pk", flat=True))
    if step_ids:
        Step.objects.filter(pk__in=step_ids).update(next_check_at=timezone.now())
        queue_steps(step_ids)


# Connected by ProvisioningConfig.ready too (the same uid): importing this alone also wires it.
ACCESS_ENDED.connect(recheck_repairs, dispatch_uid="provisioning.maintain.recheck_repairs")


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
        PERSON_TIMEOUT,
        Param(
            Verify.allowed_key,
            int,
            "Failed chips the verification after the repair may find and still return the server.",
            default=0,
            minimum=0,
            maximum=1000,
        ),
        *ROLLOUT_PARAMS,
        MAX_UNAVAILABLE_UNITS,
        *HARDWARE_PARAMS,
    )

    def respects_windows(self, workflow) -> bool:
        # A fault is urgent: the server is already out. Planned maintenance waits for a window.
        return bool(workflow.spec.get("scheduled"))


MAINTAIN = MaintainDefinition()
