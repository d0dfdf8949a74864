from django.contrib import admin

from factory.telemetry import codec
from factory.telemetry.models import DeviceReading, Fault, ServerTelemetry, TelemetrySource
from tenants.admin_base import ReadOnlyAdmin


@admin.register(Fault)
class FaultAdmin(ReadOnlyAdmin):
    """Raised by the health rules or reported through the API; cleared by maintenance."""

    list_display = [
        "opened_at",
        "rule",
        "site",
        "ultraserver",
        "chip_index",
        "detail",
        "cleared_at",
    ]
    list_filter = ["rule", "site", ("cleared_at", admin.EmptyFieldListFilter)]
    search_fields = ["ultraserver__serial", "detail"]
    list_select_related = ["site", "ultraserver"]


@admin.register(ServerTelemetry)
class ServerTelemetryAdmin(ReadOnlyAdmin):
    list_display = [
        "ultraserver",
        "ts",
        "received_at",
        "power_total_w",
        "temp_max_c",
        "utilization_avg",
        "failed_chips",
    ]
    exclude = list(codec.METRICS)  # packed per-chip arrays: the chip-health view shows them
    list_select_related = ["ultraserver"]


@admin.register(DeviceReading)
class DeviceReadingAdmin(ReadOnlyAdmin):
    list_display = ["source", "kind", "site", "rack", "ts"]
    list_filter = ["kind", "site"]


@admin.register(TelemetrySource)
class TelemetrySourceAdmin(ReadOnlyAdmin):
    list_display = ["source", "site", "last_sequence", "updated_at"]
    list_filter = ["site"]
    search_fields = ["source"]
