"""Filters of the placement API's lists (NetBox-style lookups, ``tenants.filters``)."""

from provisioning.placement.models import CapacityReservation, WorkloadUnit
from tenants.filters import FilterSet


class CapacityReservationFilterSet(FilterSet):
    class Meta:
        model = CapacityReservation
        fields = ["site", "state", "model", "constraint", "starts_at", "ends_at", "created_at"]
        search_fields = ["name", "state_reason"]


class WorkloadUnitFilterSet(FilterSet):
    class Meta:
        model = WorkloadUnit
        fields = ["site", "state", "reservation", "constraint", "spread", "created_at"]
        search_fields = ["name", "state_reason"]
