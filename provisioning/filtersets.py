"""Filters of the workflow API's lists (NetBox-style lookups, ``tenants.filters``)."""

from factory.telemetry.models import Fault
from provisioning.models import Step, Workflow
from tenants.filters import FilterSet, boolean_filter


class WorkflowFilterSet(FilterSet):
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

    class Meta:
        model = Fault
        fields = ["site", "ultraserver", "rule", "chip_index", "opened_at", "cleared_at"]
        search_fields = ["detail"]


class StepFilterSet(FilterSet):
    """A workflow's steps (``/workflows/{id}/steps/``)."""

    class Meta:
        model = Step
        fields = ["state"]
