from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from factory.catalog.models import UltraServerModel
from factory.inventory.models import Chip, ComponentFirmware, PowerFeed, Rack, Site, UltraServer
from factory.inventory.power import FeedCapacity, protected_budget
from tenants.api.base import ScopedPrimaryKeyRelatedField
from tenants.models import Tenant


class SiteSerializer(serializers.ModelSerializer):
    tenant = ScopedPrimaryKeyRelatedField(queryset=Tenant.objects.all(), tenant_fields=("id",))
    tenant_name = serializers.CharField(source="tenant.name", read_only=True)

    class Meta:
        model = Site
        brief_fields = ["code", "name"]
        fields = [
            "id",
            "code",
            "name",
            "tenant",
            "tenant_name",
            "country",
            "city",
            "time_zone",
            "contracted_power_kw",
            "contracted_cooling_kw",
            "status",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]


class RackSerializer(serializers.ModelSerializer):
    site = ScopedPrimaryKeyRelatedField(queryset=Site.objects.all(), tenant_fields=("tenant",))
    site_code = serializers.CharField(source="site.code", read_only=True)
    power_budget_kw = serializers.SerializerMethodField(
        help_text="Protected budget: under A+B, the weaker path's capacity."
    )

    class Meta:
        model = Rack
        brief_fields = ["name", "site"]
        fields = [
            "id",
            "name",
            "site",
            "site_code",
            "u_height",
            "status",
            "cooling_type",
            "cooling_capacity_kw",
            "power_budget_kw",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    @extend_schema_field(serializers.FloatField())
    def get_power_budget_kw(self, rack: Rack) -> float:
        # power_feeds is prefetched by the view: no query per rack.
        budget = protected_budget(
            FeedCapacity(f.path, f.capacity_watts) for f in rack.power_feeds.all()
        )
        return round(budget.watts / 1000, 3)


class PowerFeedSerializer(serializers.ModelSerializer):
    rack = ScopedPrimaryKeyRelatedField(
        queryset=Rack.objects.all(), tenant_fields=("site__tenant",)
    )
    rack_name = serializers.CharField(source="rack.name", read_only=True)
    capacity_kw = serializers.SerializerMethodField(
        help_text="V × A × (√3 if three-phase) × max utilization × power factor."
    )

    class Meta:
        model = PowerFeed
        brief_fields = ["name", "rack", "path"]
        fields = [
            "id",
            "name",
            "rack",
            "rack_name",
            "path",
            *PowerFeed.RATINGS,
            "capacity_kw",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    @extend_schema_field(serializers.FloatField())
    def get_capacity_kw(self, feed: PowerFeed) -> float:
        return round(feed.capacity_watts / 1000, 3)


class ComponentFirmwareSerializer(serializers.ModelSerializer):
    class Meta:
        model = ComponentFirmware
        fields = ["component", "version", "observed_at"]
        read_only_fields = fields


class UltraServerSerializer(serializers.ModelSerializer):
    model = serializers.PrimaryKeyRelatedField(queryset=UltraServerModel.objects.all())
    model_name = serializers.CharField(source="model.name", read_only=True)
    rack = ScopedPrimaryKeyRelatedField(
        queryset=Rack.objects.all(),
        tenant_fields=("site__tenant",),
        required=False,
        allow_null=True,
    )
    rack_name = serializers.CharField(source="rack.name", read_only=True, allow_null=True)
    site = serializers.IntegerField(source="rack.site_id", read_only=True, allow_null=True)
    tenant = ScopedPrimaryKeyRelatedField(
        queryset=Tenant.objects.all(), tenant_fields=("id",), required=False, allow_null=True
    )
    chip_count = serializers.IntegerField(source="model.chip_count", read_only=True)
    firmware_inventory = ComponentFirmwareSerializer(
        source="firmware_components",
        many=True,
        read_only=True,
        help_text="Per component, the firmware version its BMC last reported (read back with "
        "every command that reads the hardware state).",
    )

    class Meta:
        model = UltraServer
        brief_fields = ["serial", "rack", "position"]
        fields = [
            "id",
            "serial",
            "model",
            "model_name",
            "chip_count",
            "rack",
            "rack_name",
            "site",
            "position",
            "tenant",
            "lifecycle_state",
            "firmware_version",
            "runtime_version",
            "in_maintenance",
            "fault_reason",
            "isolated_since",
            "isolation_reason",
            "firmware_inventory",
            "last_heartbeat_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "isolated_since",
            "isolation_reason",
            "last_heartbeat_at",
            "created_at",
            "updated_at",
        ]


class ChipSerializer(serializers.ModelSerializer):
    class Meta:
        model = Chip
        brief_fields = list(Chip.IDENTITY)
        fields = ["id", *Chip.IDENTITY, "health", "health_note", *Chip.COUNTERS, "updated_at"]
        read_only_fields = [*Chip.IDENTITY, *Chip.COUNTERS, "updated_at"]


# --- Capacity (read-only shapes, for the OpenAPI schema) ---------------------------------------


class ChipCountsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    ok = serializers.IntegerField()
    degraded = serializers.IntegerField()
    failed = serializers.IntegerField()
    unknown = serializers.IntegerField()


class RackPowerSerializer(serializers.Serializer):
    budget_kw = serializers.FloatField()
    committed_kw = serializers.FloatField()
    available_kw = serializers.FloatField()
    redundant = serializers.BooleanField(help_text="Both A and B paths feed the rack.")
    paths_kw = serializers.DictField(child=serializers.FloatField())


class RackCoolingSerializer(serializers.Serializer):
    capacity_kw = serializers.FloatField()
    committed_kw = serializers.FloatField()
    available_kw = serializers.FloatField()


class SiteCoolingSerializer(serializers.Serializer):
    contracted_kw = serializers.FloatField()
    committed_kw = serializers.FloatField()
    available_kw = serializers.FloatField()


class HardwareTotalsSerializer(serializers.Serializer):
    ultraservers = serializers.IntegerField()
    chips = ChipCountsSerializer()
    fp8_dense_pflops = serializers.FloatField()
    hbm_tb = serializers.FloatField()


class RackCapacitySerializer(HardwareTotalsSerializer):
    rack = serializers.IntegerField()
    name = serializers.CharField()
    site = serializers.IntegerField()
    power = RackPowerSerializer()
    cooling = RackCoolingSerializer()


class SitePowerSerializer(serializers.Serializer):
    contracted_kw = serializers.FloatField()
    rack_budgets_kw = serializers.FloatField()
    committed_kw = serializers.FloatField()
    available_kw = serializers.FloatField()


class SiteCapacitySerializer(HardwareTotalsSerializer):
    site = serializers.IntegerField()
    code = serializers.CharField()
    racks = serializers.IntegerField()
    power = SitePowerSerializer()
    cooling = SiteCoolingSerializer()
    reserved = serializers.IntegerField(
        help_text="UltraServers a scheduled or active capacity reservation holds right now."
    )
    reserved_scheduled = serializers.IntegerField(
        help_text="UltraServers a capacity reservation that has not started yet already holds "
        "(a placement overlapping it cannot use them; a server may be counted in reserved too)."
    )
    in_units = serializers.IntegerField(help_text="UltraServers that are members of a unit.")


# --- a site's fabric (factory.inventory.fabric): the document, for the schema ---------------


class FabricNodeSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64)
    layer = serializers.JSONField(help_text="The layer number (1 = top), or a name from layers.")
    parent = serializers.CharField(
        max_length=64, allow_null=True, help_text="The parent's name; null at layer 1."
    )


class FabricSerializer(serializers.Serializer):
    """A site's EFA fabric as one document (``PUT`` replaces it as a whole)."""

    layers = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        help_text="Layer names, top first (optional on PUT).",
    )
    nodes = FabricNodeSerializer(many=True)
    attachments = serializers.DictField(
        child=serializers.CharField(max_length=64, allow_null=True),
        required=False,
        help_text="Server serial → the lowest-layer node it hangs under (null detaches it).",
    )


class PutInServiceSerializer(serializers.Serializer):
    """Many deployed UltraServers put in service at once (``ultraservers/put-in-service/``)."""

    ultraservers = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        min_length=1,
        max_length=1000,
        help_text="The UltraServers' ids, each ready (deployed) or already in service.",
    )
    site = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,
        help_text="Optionally, the site they must all be at (a server elsewhere is a 400).",
    )
    reason = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class PutInServiceResultSerializer(serializers.Serializer):
    ultraservers = serializers.ListField(child=serializers.IntegerField())
    changed = serializers.ListField(
        child=serializers.IntegerField(), help_text="Those moved from ready to in service."
    )
