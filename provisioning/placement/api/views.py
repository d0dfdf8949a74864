"""Capacity reservations and workload units: tenant-scoped. The site's tenant admins reserve,
place, cancel and release; everyone who may see the site (tenant viewers, the provider) reads.
Views are thin: the body is read here, the rest is ``provisioning.placement.services``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import Count, Prefetch, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from provisioning.placement import services
from provisioning.placement.api import serializers as s
from provisioning.placement.filtersets import (
    CapacityReservationFilterSet,
    WorkloadUnitFilterSet,
)
from provisioning.placement.models import (
    CapacityReservation,
    ReservedServer,
    UnitMember,
    WorkloadUnit,
)
from tenants.api.base import ConditionalWritesMixin, ScopedViewSetMixin, change_context
from tenants.choices import Role

TENANT_WRITERS = frozenset({Role.TENANT_ADMIN})


class _PlacementViewSet(
    ConditionalWritesMixin,
    ScopedViewSetMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    tenant_fields = ("tenant",)
    write_roles = TENANT_WRITERS
    etag_on_create = True

    def _require_writer(self, tenant_id: int) -> None:
        if not self.actor.can_write(tenant_id, self.write_roles):
            raise exceptions.PermissionDenied("Your role may not change this.", code="role")

    def _steer(self, fn: Callable[..., Any], **kwargs: Any) -> Response:
        """``fn(obj, ctx, **kwargs)`` on the object, honouring ``If-Match`` (412 when stale,
        checked again under the row lock the service takes)."""
        obj = self.get_object()
        self._require_writer(obj.tenant_id)
        expected = self.request.headers.get("If-Match")
        self.check_if_match(obj, expected)
        with self.if_match_under_lock(obj, expected):
            result = fn(obj, change_context(self.request), **kwargs)
        return self.object_response(result)


class CapacityReservationViewSet(_PlacementViewSet):
    """Capacity reservations (EC2 capacity blocks): N UltraServers of a model at a site for a
    time range, under a topology constraint. Its servers are chosen when it is made; one that
    cannot be honoured is a 409 naming the constraint (``count`` when too few are usable)."""

    queryset = CapacityReservation.objects.select_related("site", "model").annotate(
        servers_count=Count("holds")
    )
    serializer_class = s.ReservationSerializer
    filterset_class = CapacityReservationFilterSet
    ordering_fields = ["starts_at", "ends_at", "created_at", "state", "count"]
    object_actions = conditional_actions = frozenset({"cancel"})

    def get_queryset(self) -> QuerySet[CapacityReservation]:
        # The list shows a count of holds only (up to 1,000 a reservation, 50 a page): the
        # serials are read for one reservation at a time.
        queryset = super().get_queryset()
        if self.action == "list":
            return queryset
        return queryset.prefetch_related(
            Prefetch("holds", queryset=ReservedServer.objects.select_related("ultraserver"))
        )

    def get_serializer_class(self) -> type[BaseSerializer]:
        if self.action == "list":
            return s.ReservationSerializer
        return s.ReservationDetailSerializer

    @extend_schema(
        request=s.ReservationCreateSerializer, responses={201: s.ReservationDetailSerializer}
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = s.ReservationCreateSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        data = body.validated_data
        site = data["site"]
        self._require_writer(site.tenant_id)
        reservation = services.reserve(
            site.tenant,
            site,
            data["model"],
            data["count"],
            data["starts_at"],
            data["ends_at"],
            data["constraint"],
            data["max_hops"],
            change_context(request),
            name=data["name"],
        )
        return self.object_response(reservation, 201)

    @extend_schema(request=s.ReasonSerializer, responses=s.ReservationDetailSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Give the servers back (409 while units still run in it)."""
        body = s.ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._steer(services.cancel_reservation, reason=body.validated_data["reason"])


class WorkloadUnitViewSet(_PlacementViewSet):
    """Workload units: a leader and followers placed together by the solver, nearest first,
    inside a reservation or from free capacity. The detail shows each member's role, rack and
    distance to the leader, and the solver's explanation (why these, why not the others)."""

    queryset = WorkloadUnit.objects.select_related("site").prefetch_related(
        Prefetch("members", queryset=UnitMember.objects.select_related("ultraserver__rack"))
    )
    serializer_class = s.UnitSerializer
    filterset_class = WorkloadUnitFilterSet
    ordering_fields = ["name", "created_at", "state", "size"]
    object_actions = conditional_actions = frozenset({"release"})

    def get_serializer_class(self) -> type[BaseSerializer]:
        if self.action in ("retrieve", "create", "release"):
            return s.UnitDetailSerializer
        return super().get_serializer_class()

    @extend_schema(request=s.UnitCreateSerializer, responses={201: s.UnitDetailSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = s.UnitCreateSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        data = body.validated_data
        site = data["site"]
        self._require_writer(site.tenant_id)
        unit = services.place_unit(
            site.tenant,
            site,
            data["name"],
            data["size"],
            data["constraint"],
            data["max_hops"],
            data["spread"],
            data["inputs"],
            change_context(request),
            reservation=data["reservation"],
            max_unavailable=data["max_unavailable"],
            model=data["model"],
            auto_replace=data["auto_replace"],
        )
        return self.object_response(unit, 201)

    @extend_schema(request=s.ReasonSerializer, responses=s.UnitDetailSerializer)
    @action(detail=True, methods=["post"])
    def release(self, request: Request, pk: str | None = None) -> Response:
        """End the unit: its members go back to free capacity (or to its reservation)."""
        body = s.ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._steer(services.release_unit, reason=body.validated_data["reason"])
