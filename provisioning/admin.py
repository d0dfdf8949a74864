from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from factory.inventory.models import UltraServer
from provisioning import services
from provisioning.forms import SpecForm
from provisioning.models import (
    CapacityFloor,
    FirmwareRelease,
    JobRun,
    MaintenanceWindow,
    Notification,
    PartReplacement,
    SchedulerLease,
    Step,
    Workflow,
    WorkflowEvent,
    WorkflowTarget,
)
from provisioning.workflows.upgrade import UPGRADE_PARAMS
from tenants.access import actor_for
from tenants.admin_base import AuditedModelAdmin, ReadOnlyAdmin, ReadOnlyInline, admin_context
from tenants.django_errors import REFUSALS
from tenants.errors import Conflict


class StepInline(ReadOnlyInline):
    model = Step
    fields = ["target", "seq", "name", "state", "attempt", "external_ref", "next_check_at", "error"]
    ordering = ["target_id", "seq"]
    max_num = 0


class EventInline(ReadOnlyInline):
    model = WorkflowEvent
    fields = ["at", "kind", "message", "actor"]


class StartUpgradeForm(SpecForm):
    """The servers, then the upgrade's spec as declared (checked by ``create_workflow``)."""

    params = UPGRADE_PARAMS
    ultraservers = forms.ModelMultipleChoiceField(
        queryset=UltraServer.objects.select_related("rack__site").order_by("serial"),
        widget=forms.SelectMultiple(attrs={"size": 15}),
        required=False,  # none chosen: the service's refusal, as in the API and the console
    )


@admin.register(Workflow)
class WorkflowAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "kind",
        "state",
        "site",
        "current_batch",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["kind", "state", "site"]
    inlines = [StepInline, EventInline]
    actions = ["pause_selected", "resume_selected", "cancel_selected"]

    def get_urls(self):
        return [
            path(
                "start-upgrade/",
                self.admin_site.admin_view(self.start_upgrade),
                name="provisioning_workflow_start_upgrade",
            ),
            *super().get_urls(),
        ]

    def start_upgrade(self, request):
        """Start a rolling upgrade over a selection of UltraServers (provider admins)."""
        if not actor_for(request.user).is_provider_admin:
            raise PermissionDenied
        initial = {}
        if request.GET.get("ids"):
            initial["ultraservers"] = [int(i) for i in request.GET["ids"].split(",") if i.isdigit()]
        form = StartUpgradeForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            try:
                workflow, _ = services.create_workflow(
                    "upgrade",
                    list(form.cleaned_data["ultraservers"]),
                    admin_context(request),
                    spec=form.spec(),
                    reason="started from admin",
                )
            except REFUSALS as refused:  # on the fields it names, the rest above the form
                form.refused(refused, {"targets": "ultraservers"})
            else:
                self.message_user(request, f"Rolling upgrade #{workflow.pk} started.")
                return HttpResponseRedirect(
                    reverse("admin:provisioning_workflow_change", args=[workflow.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": "Start a rolling upgrade",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/provisioning/start_upgrade.html", context)

    def _each(self, request, queryset, fn, verb, reason=""):
        for workflow in queryset:
            try:
                fn(workflow, admin_context(request), **({"reason": reason} if reason else {}))
                self.message_user(request, f"#{workflow.pk} {verb}.")
            except Conflict as refused:
                self.message_user(request, refused.message, messages.ERROR)

    @admin.action(description="Pause selected workflows")
    def pause_selected(self, request, queryset):
        self._each(
            request, queryset, services.pause, "paused", f"paused from the admin by {request.user}"
        )

    @admin.action(description="Resume selected workflows")
    def resume_selected(self, request, queryset):
        self._each(request, queryset, services.resume, "resumed")

    @admin.action(description="Cancel selected workflows")
    def cancel_selected(self, request, queryset):
        self._each(
            request,
            queryset,
            services.cancel,
            "cancelling",
            f"cancelled from the admin by {request.user}",
        )


@admin.register(WorkflowTarget)
class WorkflowTargetAdmin(ReadOnlyAdmin):
    list_display = ["workflow", "ultraserver", "batch", "state", "active", "error"]
    list_filter = ["state", "active"]
    list_select_related = ["workflow", "ultraserver"]


@admin.register(Step)
class StepAdmin(ReadOnlyAdmin):
    list_display = [
        "workflow",
        "target",
        "seq",
        "name",
        "state",
        "attempt",
        "next_check_at",
        "error",
    ]
    list_filter = ["state", "name"]
    list_select_related = ["workflow", "target__ultraserver"]


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(AuditedModelAdmin):
    list_display = ["name", "site", "weekdays", "start_time", "duration_minutes", "status"]
    list_filter = ["status", "site"]
    readonly_fields = ["status", "proposed_by", "decided_by", "decided_at"]

    def save_instance(self, obj, ctx):
        """Proposed, like one from the API: a changed window goes back for approval."""
        return services.propose_window(obj, ctx)


@admin.register(CapacityFloor)
class CapacityFloorAdmin(AuditedModelAdmin):
    list_display = ["site", "min_in_service"]


@admin.register(FirmwareRelease)
class FirmwareReleaseAdmin(AuditedModelAdmin):
    list_display = ["model", "version", "origin", "key_id", "baseline"]
    list_filter = ["model", "baseline"]


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    list_display = ["job", "started_at", "finished_at", "outcome", "summary", "error"]
    list_filter = ["job", "outcome"]


admin.site.register(PartReplacement, ReadOnlyAdmin)


@admin.register(SchedulerLease)
class SchedulerLeaseAdmin(ReadOnlyAdmin):
    """Which beat replica sends the scheduled jobs, and since when (read-only: the replicas
    keep it)."""

    list_display = ["name", "holder", "since", "renewed_at", "expires_at"]


admin.site.register(Notification, ReadOnlyAdmin)


@admin.action(description="Start a rolling upgrade of the selected UltraServers")
def start_rolling_upgrade(modeladmin, request, queryset):
    ids = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True))
    return HttpResponseRedirect(
        reverse("admin:provisioning_workflow_start_upgrade") + f"?ids={ids}"
    )


_server_admin = admin.site._registry.get(UltraServer)
if _server_admin is not None:
    _server_admin.actions = [*(_server_admin.actions or []), start_rolling_upgrade]
