from django.contrib import admin

from factory.catalog.models import ChipModel, UltraServerModel
from tenants.admin_base import ReadOnlyAdmin


@admin.register(ChipModel)
class ChipModelAdmin(ReadOnlyAdmin):
    """The catalog changes by data migration (reviewed, versioned), not by hand."""

    list_display = [
        "name",
        "vendor",
        "fp8_dense_pflops",
        "hbm_gb",
        "hbm_tbps",
        "nominal_power_w",
        "max_power_w",
        "cooling",
        "power_is_estimate",
    ]
    list_filter = ["vendor", "cooling"]
    search_fields = ["name", "vendor"]


@admin.register(UltraServerModel)
class UltraServerModelAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "chip_model",
        "chip_count",
        "chips_per_tray",
        "trays",
        "interconnect",
        "fp8_dense_pflops",
        "hbm_tb",
        "hbm_tbps",
        "max_power_w",
    ]
    list_filter = ["interconnect", "cooling"]
    search_fields = ["name"]
    list_select_related = ["chip_model"]
