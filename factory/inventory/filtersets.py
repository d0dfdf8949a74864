"""The inventory's filters: NetBox-style lookups generated per field (``tenants.filters``)."""

from factory.inventory.models import Chip, PowerFeed, Rack, Site, UltraServer
from tenants.filters import FilterSet, boolean_filter

TIMES = ["created_at", "updated_at"]


class SiteFilterSet(FilterSet):
    class Meta:
        model = Site
        fields = [
            "tenant",
            "code",
            "name",
            "country",
            "city",
            "status",
            "air_gapped",
            "contracted_power_kw",
            "contracted_cooling_kw",
            *TIMES,
        ]
        search_fields = ["code", "name", "city"]


class RackFilterSet(FilterSet):
    class Meta:
        model = Rack
        fields = [
            "site",
            ("tenant", "site__tenant"),
            "name",
            "status",
            "cooling_type",
            "cooling_capacity_kw",
            "u_height",
            *TIMES,
        ]
        search_fields = ["name"]


class PowerFeedFilterSet(FilterSet):
    class Meta:
        model = PowerFeed
        fields = [
            "rack",
            ("site", "rack__site"),
            "name",
            "path",
            "phase",
            "voltage",
            "amperage",
            *TIMES,
        ]
        search_fields = ["name"]


class UltraServerFilterSet(FilterSet):
    unplaced = boolean_filter("rack", "isnull", "true: in no rack; false: placed")

    class Meta:
        model = UltraServer
        fields = [
            "serial",
            "model",
            "rack",
            ("site", "rack__site"),
            "tenant",
            "lifecycle_state",
            "firmware_version",
            "runtime_version",
            "in_maintenance",
            "position",
            "last_heartbeat_at",
            "unreachable_since",
            *TIMES,
        ]
        search_fields = ["serial", "firmware_version", "runtime_version"]


class ChipFilterSet(FilterSet):
    class Meta:
        model = Chip
        fields = [
            "ultraserver",
            ("rack", "ultraserver__rack"),
            ("site", "ultraserver__rack__site"),
            ("tenant", "ultraserver__tenant"),
            "serial",
            "index",
            "health",
            "ecc_corrected",
            "ecc_uncorrected",
            "link_errors",
            "updated_at",
        ]
        search_fields = ["serial"]
