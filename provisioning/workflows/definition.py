from __future__ import annotations

from factory.inventory.models import UltraServer
from provisioning.models import Workflow
from provisioning.outcomes import Fail
from provisioning.workflows.base import HARDWARE_PARAMS, StepDefinition, StepRun, StepSpec
from provisioning.workflows.params import Param, ParamSet

#: How the engine rolls a workflow out over its servers; every kind may set these (an
#: upgrade declares defaults for them, the other kinds run everything at once).
ROLLOUT_PARAMS = ParamSet(
    Param(
        "batch_size",
        int,
        "UltraServers per batch (after the canary).",
        minimum=1,
        maximum=10_000,
    ),
    Param(
        "max_unavailable_per_domain",
        int,
        "At most this many UltraServers of one rack, or of one power feed, out at a time "
        "(0: no limit).",
        minimum=0,
        maximum=1000,
        label="Max unavailable per rack / feed",
    ),
    Param(
        "soak_seconds",
        int,
        "How long a finished batch soaks before the health gate lets the next one start.",
        minimum=0,
        maximum=7 * 86400,
        label="Soak (seconds)",
    ),
    Param(
        "health_gate_max_failed_chips",
        int,
        "Failed chips a batch may have and still pass its health gate (and its servers their "
        "health check).",
        minimum=0,
        maximum=1000,
    ),
    Param(
        "max_failures",
        int,
        "Failure budget: more failed UltraServers than this and the rollout pauses itself.",
        minimum=0,
        maximum=100_000,
    ),
    Param(
        "max_failure_pct",
        float,
        "Failure budget as a share of the targets, in percent: beyond it the rollout pauses.",
        minimum=0,
        maximum=100,
        label="Max failure %",
    ),
)


class WorkflowDefinition:
    kind: str = ""
    #: The steps, in the order each UltraServer runs them (compensation-only ones last).
    steps: tuple[StepDefinition, ...] = ()
    #: The spec this kind takes (``services.create_workflow`` checks it, fills in defaults).
    spec_params: ParamSet = ParamSet(*ROLLOUT_PARAMS, *HARDWARE_PARAMS)

    def __init__(self) -> None:
        self._by_name = {s.name: s for s in self.steps}

    def step(self, name: str) -> StepDefinition:
        return self._by_name[name]

    def manual_step(self, name: str) -> StepDefinition | None:
        """The step ``name`` if it is one a person hands input to."""
        step = self._by_name.get(name)
        return step if step is not None and step.inputs is not None else None

    @property
    def manual_steps(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps if s.inputs is not None)

    def plan(self, workflow: Workflow, server: UltraServer) -> list[StepSpec]:
        """The steps for one UltraServer, in order."""
        return [
            StepSpec(s.name, s.plan_input(workflow, server))
            for s in self.steps
            if not s.compensation_only
        ]

    def compensation(self, run: StepRun, failure: Fail) -> list[StepSpec]:
        """Steps that undo a failed server's half-done change (e.g. boot the old firmware bank)."""
        return []

    def respects_windows(self, workflow) -> bool:
        return False

    def canary_size(self, workflow) -> int:
        return 0

    def batch_size(self, workflow) -> int:
        canary = self.canary_size(workflow)
        if workflow.current_batch < 0 and canary:
            return canary
        return int(workflow.spec.get("batch_size", 10_000))
