from django.contrib import admin

from factory.inventory import services
from factory.inventory.models import Chip, ComponentFirmware, PowerFeed, Rack, Site, UltraServer
from tenants.admin_base import AuditedModelAdmin, ReadOnlyInline


class PowerFeedInline(ReadOnlyInline):
    model = PowerFeed
    show_change_link = True
    fields = ["name", "path", *PowerFeed.RATINGS]


class ChipInline(ReadOnlyInline):
    """The chips of an UltraServer: read here, health changed on the chip's own page."""

    model = Chip
    show_change_link = True
    fields = ["index", "serial", "health", *Chip.COUNTERS, "updated_at"]


class FirmwareInline(ReadOnlyInline):
    """The firmware each component last reported (read from the BMC, never edited)."""

    model = ComponentFirmware
    fields = ["component", "version", "observed_at"]
    verbose_name = "component firmware (as last read)"
    verbose_name_plural = "firmware inventory (as last read)"


@admin.register(Site)
class SiteAdmin(AuditedModelAdmin):
    list_display = [
        "code",
        "name",
        "tenant",
        "country",
        "city",
        "status",
        "contracted_power_kw",
        "contracted_cooling_kw",
    ]
    list_filter = ["status", "country", "tenant"]
    search_fields = ["code", "name", "city", "tenant__name"]
    list_select_related = ["tenant"]

    def save_instance(self, obj, ctx):
        return services.save_site(obj, ctx)  # provider facts: audited, announced (issue 14)


@admin.register(Rack)
class RackAdmin(AuditedModelAdmin):
    list_display = ["name", "site", "u_height", "status", "cooling_type", "cooling_capacity_kw"]
    list_filter = ["status", "cooling_type", "site"]
    search_fields = ["name", "site__code"]
    list_select_related = ["site"]
    inlines = [PowerFeedInline]


@admin.register(PowerFeed)
class PowerFeedAdmin(AuditedModelAdmin):
    list_display = ["name", "rack", "path", *PowerFeed.RATINGS, "capacity_kw"]
    list_filter = ["path", "phase", "rack__site"]
    search_fields = ["name", "rack__name"]
    list_select_related = ["rack"]

    @admin.display(description="Capacity (kW)")
    def capacity_kw(self, feed):
        return round(feed.capacity_watts / 1000, 1)

    def delete_instance(self, obj, ctx):
        services.delete_power_feed(obj, ctx)


@admin.register(UltraServer)
class UltraServerAdmin(AuditedModelAdmin):
    list_display = [
        "serial",
        "model",
        "rack",
        "position",
        "tenant",
        "lifecycle_state",
        "firmware_version",
        "in_maintenance",
        "last_heartbeat_at",
    ]
    list_filter = ["lifecycle_state", "in_maintenance", "model", "rack__site", "tenant"]
    search_fields = ["serial", "rack__name", "firmware_version"]
    list_select_related = ["model", "rack", "tenant"]
    readonly_fields = [
        "last_heartbeat_at",
        "isolated_since",
        "isolation_reason",
        "created_at",
        "updated_at",
    ]
    inlines = [FirmwareInline, ChipInline]

    def save_instance(self, obj, ctx):
        return services.save_ultraserver(obj, ctx)


@admin.register(Chip)
class ChipAdmin(AuditedModelAdmin):
    list_display = ["serial", "ultraserver", "index", "health", *Chip.COUNTERS, "updated_at"]
    list_filter = ["health", "ultraserver__rack__site"]
    search_fields = ["serial", "ultraserver__serial"]
    list_select_related = ["ultraserver"]
    fields = [*Chip.IDENTITY, "health", "health_note", *Chip.COUNTERS]
    readonly_fields = [*Chip.IDENTITY, *Chip.COUNTERS]

    def has_add_permission(self, request):
        return False
