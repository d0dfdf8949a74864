"""Admin writes go through the same change services as the API: validated, locked, audited."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpResponseRedirect

from tenants.access import actor_for
from tenants.choices import AuditSource
from tenants.services.changes import ChangeContext, ChangeRefused, delete_object, save_object


def admin_context(request) -> ChangeContext:
    return ChangeContext(
        actor=actor_for(request.user),
        source=AuditSource.ADMIN,
        request_id=getattr(request, "request_id", ""),
    )


class AuditedModelAdmin(admin.ModelAdmin):
    def save_instance(self, obj, ctx: ChangeContext):
        return save_object(obj, ctx)

    def delete_instance(self, obj, ctx: ChangeContext) -> None:
        delete_object(obj, ctx)

    def save_model(self, request, obj, form, change):
        self.save_instance(obj, admin_context(request))

    def delete_model(self, request, obj):
        self.delete_instance(obj, admin_context(request))

    def delete_queryset(self, request, queryset):
        ctx = admin_context(request)
        with transaction.atomic():
            for obj in queryset:
                self.delete_instance(obj, ctx)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ChangeRefused as refused:
            self.message_user(request, f"Not deleted: {refused.message}", messages.ERROR)
            return HttpResponseRedirect(request.path.rsplit("/delete/", 1)[0] + "/change/")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Look, never touch: append-only logs, and records that change only through their own
    services (the catalog by migration, rules through the API)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
