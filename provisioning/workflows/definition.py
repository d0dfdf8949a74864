from __future__ import annotations

from provisioning.outcomes import Fail
from provisioning.workflows.base import StepDefinition, StepRun, StepSpec


class WorkflowDefinition:
    kind: str = ""
    steps: tuple[StepDefinition, ...] = ()

    def __init__(self) -> None:
        self._by_name = {s.name: s for s in self.steps}

    def step(self, name: str) -> StepDefinition:
        return self._by_name[name]

    def plan(self, workflow, server) -> list[StepSpec]:
        """The steps for one UltraServer, in order."""
        return [StepSpec(s.name) for s in self.steps if not getattr(s, "compensation_only", False)]

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
