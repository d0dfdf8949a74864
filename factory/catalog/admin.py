from django.contrib import admin

from factory.catalog.models import ChipModel, UltraServerModel


class ReadOnlyAdmin(admin.ModelAdmin):
    """The catalog changes by data migration (reviewed, versioned), not by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ChipModel)
class ChipModelAdmin(ReadOnlyAdmin):
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
        "interconnect",
        "fp8_dense_pflops",
        "hbm_tb",
        "hbm_tbps",
        "max_power_w",
    ]
    list_filter = ["interconnect", "cooling"]
    search_fields = ["name"]
    list_select_related = ["chip_model"]
