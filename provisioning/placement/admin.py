"""Reservations and units in admin: looked at, changed only through their services (the
solver chose their servers; an edit by hand would bypass it). Cancel and release are actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from provisioning.placement import services
from provisioning.placement.models import (
    CapacityReservation,
    ReservedServer,
    UnitMember,
    WorkloadUnit,
)
from tenants.admin_base import ReadOnlyAdmin, ReadOnlyInline, admin_context
from tenants.django_errors import REFUSALS


class HoldInline(ReadOnlyInline):
    model = ReservedServer
    fields = ["ultraserver", "starts_at", "ends_at"]


class MemberInline(ReadOnlyInline):
    model = UnitMember
    fields = ["ultraserver", "role", "state", "state_reason", "joined_at", "left_at"]


def _each(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    fn: Callable[..., Any],
    verb: str,
) -> None:
    done = 0
    for obj in queryset:
        try:
            fn(obj, admin_context(request))
            done += 1
        except REFUSALS as refused:
            modeladmin.message_user(request, f"{obj}: not {verb}: {refused}", messages.ERROR)
    if done:
        modeladmin.message_user(request, f"{done} {verb}.", messages.SUCCESS)


@admin.action(description="Cancel the selected reservations")
def cancel_reservations(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> None:
    _each(modeladmin, request, queryset, services.cancel_reservation, "cancelled")


@admin.action(description="Release the selected units")
def release_units(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    _each(modeladmin, request, queryset, services.release_unit, "released")


@admin.register(CapacityReservation)
class CapacityReservationAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "tenant", "site", "model", "count", "starts_at", "ends_at", "state"]
    list_filter = ["state", "constraint", "site"]
    search_fields = ["name", "state_reason"]
    inlines = [HoldInline]
    actions = [cancel_reservations]


@admin.register(WorkloadUnit)
class WorkloadUnitAdmin(ReadOnlyAdmin):
    list_display = ["name", "tenant", "site", "size", "constraint", "spread", "state"]
    list_filter = ["state", "constraint", "spread", "site"]
    search_fields = ["name", "state_reason"]
    inlines = [MemberInline]
    actions = [release_units]
