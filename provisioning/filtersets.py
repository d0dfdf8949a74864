"""Filters of the workflow API's lists (NetBox-style lookups, ``tenants.filters``)."""

from collections.abc import Callable
from typing import Any

from django.db.models import Q

from factory.telemetry.models import Fault
from factory.telemetry.models.faults import silenced_at
from provisioning.attention import needs_action_filter
from provisioning.models import Step, Workflow, WorkflowTarget
from tenants.filters import FilterSet, LookupFilter, StrictBooleanField, boolean_filter


class _StateFilter(LookupFilter):
    """``name=true|false``: the rows in a state (``when``, a Q built per request: "silenced"
    means until a time still ahead, "needs action" reads the manual step names), or not in
    it. The one boolean state filter of these lists."""

    def __init__(self, when: Callable[[], Q], label: str) -> None:
        super().__init__(
            "",
            "exact",
            item=StrictBooleanField,
            schema={"type": "boolean"},
            many=False,
            label=label,
        )
        self.when = when

    def predicate(self, value: Any) -> Q:
        return self.when() if value else ~self.when()


class WorkflowFilterSet(FilterSet):
    needs_action = _StateFilter(
        needs_action_filter,
        "true: it needs a person now (needs_action is set); false: it does not",
    )

    class Meta:
        model = Workflow
        fields = [
            "kind",
            "state",
            "site",
            "created_by",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
        ]
        search_fields = ["reason", "state_reason", "created_by"]


class FaultFilterSet(FilterSet):
    open = boolean_filter("cleared_at", "isnull", "true: not cleared yet; false: cleared")
    acknowledged = _StateFilter(
        lambda: Q(acknowledged_at__isnull=False), "true: someone acknowledged it; false: nobody"
    )
    silenced = _StateFilter(silenced_at, "true: silenced now; false: not silenced")

    class Meta:
        model = Fault
        fields = [
            "site",
            "ultraserver",
            "rule",
            "severity",
            "action",
            "chip_index",
            "opened_at",
            "cleared_at",
        ]
        search_fields = ["detail"]


class StepFilterSet(FilterSet):
    """A workflow's steps (``/workflows/{id}/steps/``)."""

    class Meta:
        model = Step
        fields = ["state"]


class TargetFilterSet(FilterSet):
    """A workflow's servers (``/workflows/{id}/targets/``)."""

    class Meta:
        model = WorkflowTarget
        fields = ["state"]
