from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from factory.inventory import fabric, services
from factory.inventory.choices import ChipHealth
from factory.inventory.models import (
    Chip,
    ComponentFirmware,
    NetworkNode,
    PowerFeed,
    Rack,
    Site,
    UltraServer,
)
from tenants.access import actor_for
from tenants.admin_base import AuditedModelAdmin, ReadOnlyInline


class PowerFeedInline(ReadOnlyInline):
    model = PowerFeed
    show_change_link = True
    fields = ["name", "path", *PowerFeed.RATINGS]


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
    bulk_delete = False  # racks hold on to their site (PROTECT): refused anyway

    def save_instance(self, obj, ctx):
        return services.save_site(obj, ctx)  # provider facts: audited, announced (issue 14)


@admin.register(Rack)
class RackAdmin(AuditedModelAdmin):
    list_display = ["name", "site", "u_height", "status", "cooling_type", "cooling_capacity_kw"]
    list_filter = ["status", "cooling_type", "site"]
    search_fields = ["name", "site__code"]
    list_select_related = ["site"]
    inlines = [PowerFeedInline]
    bulk_delete = False  # servers hold on to their rack (PROTECT): refused anyway


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


@admin.register(NetworkNode)
class NetworkNodeAdmin(AuditedModelAdmin):
    """The sites' EFA fabrics, switch by switch: provider admins only (a tenant never sees a
    node's name). A whole fabric is replaced at once with ``manage.py import_fabric`` or
    ``PUT /api/v1/sites/{id}/fabric/``; the rules are the same (the model's ``clean``)."""

    list_display = ["name", "site", "layer", "parent", "servers"]
    list_filter = ["site", "layer"]
    search_fields = ["name", "site__code", "parent__name"]
    list_select_related = ["site", "parent"]
    autocomplete_fields = ["parent"]
    readonly_fields = ["created_at", "updated_at"]
    ordering = ["site__code", "layer", "name"]
    bulk_delete = False  # children and servers hold on to a node (PROTECT)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(server_count=Count("ultraservers"))

    @admin.display(description="Servers", ordering="server_count")
    def servers(self, node):
        return node.server_count

    def get_search_results(self, request, queryset, search_term):
        """The UltraServer form's node picker offers only nodes servers may hang under."""
        queryset, duplicates = super().get_search_results(request, queryset, search_term)
        if request.GET.get("model_name") == "ultraserver":
            queryset = queryset.filter(children__isnull=True)
        return queryset, duplicates

    def _provider_admin(self, request) -> bool:
        return actor_for(request.user).is_provider_admin

    def has_module_permission(self, request):
        return self._provider_admin(request) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return self._provider_admin(request) and super().has_view_permission(request, obj)

    def has_add_permission(self, request):
        return self._provider_admin(request) and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        return self._provider_admin(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._provider_admin(request) and super().has_delete_permission(request, obj)


class UltraServerForm(forms.ModelForm):
    """Checks the server's network node with the fabric's own rule (same site as its rack,
    the lowest layer)."""

    # No Meta: the admin builds the form for UltraServer with its own field list.

    def clean(self):
        cleaned = super().clean()
        if "network_node" in cleaned and cleaned["network_node"] is not None:
            probe = UltraServer(
                serial=cleaned.get("serial") or self.instance.serial, rack=cleaned.get("rack")
            )
            problem = fabric.attachment_problem(probe, cleaned["network_node"])
            if problem:
                code, message = problem
                self.add_error("network_node", ValidationError(message, code=code))
        return cleaned


@admin.register(UltraServer)
class UltraServerAdmin(AuditedModelAdmin):
    form = UltraServerForm
    autocomplete_fields = ["network_node"]
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
        "chips",
        "last_heartbeat_at",
        "unreachable_since",
        "isolated_since",
        "isolation_reason",
        "created_at",
        "updated_at",
    ]
    inlines = [FirmwareInline]

    @admin.display(description="Chips")
    def chips(self, server: UltraServer | None) -> str:
        """Counts by health, each a link to the chip list filtered to this server: 144 rows
        inline would bury the form."""
        if server is None or server.pk is None:
            return "–"
        counts = dict(
            Chip.objects.filter(ultraserver=server)
            .values_list("health")
            .annotate(n=Count("pk"))
            .values_list("health", "n")
        )
        base = reverse("admin:inventory_chip_changelist")
        total = sum(counts.values())
        parts = [
            format_html(
                '<a href="{}?ultraserver__id__exact={}&amp;health={}">{} {}</a>',
                base,
                server.pk,
                health,
                counts[health],
                str(label).lower(),
            )
            for health, label in ChipHealth.choices
            if counts.get(health)
        ]
        everything = format_html(
            '<a href="{}?ultraserver__id__exact={}">all {} chips</a>', base, server.pk, total
        )
        return format_html_join(" · ", "{}", ((p,) for p in [*parts, everything]))

    def save_instance(self, obj, ctx):
        return services.save_ultraserver(obj, ctx)


@admin.register(Chip)
class ChipAdmin(AuditedModelAdmin):
    list_display = ["serial", "ultraserver", "index", "health", *Chip.COUNTERS, "updated_at"]
    list_filter = ["health", "ultraserver__rack__site"]
    search_fields = ["serial", "ultraserver__serial"]
    list_select_related = ["ultraserver"]
    fields = [*Chip.IDENTITY, "health", "health_note", *Chip.COUNTERS, "updated_at"]
    readonly_fields = [*Chip.IDENTITY, *Chip.COUNTERS]

    def has_add_permission(self, request):
        return False
