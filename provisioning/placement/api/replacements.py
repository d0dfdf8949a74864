"""A unit's replacement proposals: ``GET /units/{unit}/replacements/`` (every role of the
unit's tenant, and the provider) and ``POST …/{id}/accept/`` / ``…/reject/`` (the unit's own
tenant admins). Another tenant's unit or proposal is a 404; the swap itself is
``provisioning.placement.lifecycle.accept``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from provisioning.placement import lifecycle
from provisioning.placement.models import UnitReplacement, WorkloadUnit
from tenants.access import scope_queryset
from tenants.api.base import ScopedViewSetMixin, change_context
from tenants.choices import Role
from tenants.errors import NotFound
from tenants.services.changes import ChangeContext


class UnitReplacementSerializer(serializers.ModelSerializer):
    failed_server = serializers.CharField(
        source="failed_member.ultraserver.serial",
        read_only=True,
        help_text="Serial of the failed member's UltraServer.",
    )
    failed_role = serializers.CharField(source="failed_member.role", read_only=True)
    replacement_server = serializers.CharField(
        source="replacement.serial",
        read_only=True,
        allow_null=True,
        default=None,
        help_text="Serial of the proposed UltraServer (none when no server qualified).",
    )

    class Meta:
        model = UnitReplacement
        brief_fields = ["state", "replacement_server"]
        fields = [
            "id",
            "unit",
            "failed_member",
            "failed_server",
            "failed_role",
            "replacement",
            "replacement_server",
            "state",
            "explanation",
            "workflow_id",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


UNIT_PATH = OpenApiParameter(
    "unit_pk", OpenApiTypes.INT, OpenApiParameter.PATH, description="The workload unit's id."
)


@extend_schema_view(
    list=extend_schema(parameters=[UNIT_PATH]),
    retrieve=extend_schema(parameters=[UNIT_PATH]),
)
class UnitReplacementViewSet(
    ScopedViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Proposed swaps of a unit's failed members for healthy servers under the unit's network
    node. Accepting one swaps it in (409 ``replacement_unusable`` if the server no longer
    qualifies) and opens a maintain workflow for the failed server unless one holds it."""

    queryset = UnitReplacement.objects.select_related(
        "unit", "failed_member__ultraserver", "replacement"
    ).order_by("-created_at", "-id")
    serializer_class = UnitReplacementSerializer
    tenant_fields = ("unit__tenant",)
    filterset_fields = ["state"]
    ordering_fields = ["created_at"]

    write_roles = frozenset({Role.TENANT_ADMIN})  # deciding is the unit's tenant's choice

    def _unit(self) -> WorkloadUnit:
        units = scope_queryset(WorkloadUnit.objects.all(), self.actor, ("tenant",))
        unit = units.filter(pk=self.kwargs.get("unit_pk")).first()
        if unit is None:
            raise NotFound("no such workload unit", code="not_found", field="unit")
        return unit

    def get_queryset(self) -> QuerySet[UnitReplacement]:
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):
            return queryset
        return queryset.filter(unit_id=self.kwargs.get("unit_pk"))

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self._unit()  # another tenant's unit: 404, not an empty list
        return super().list(request, *args, **kwargs)

    def _decide(self, fn: Callable[[UnitReplacement, ChangeContext], UnitReplacement]) -> Response:
        # write_roles is tenant-admin alone: get_object's object permission check admits only
        # a tenant admin of the unit's own tenant.
        self._unit()
        replacement = self.get_object()
        replacement = fn(replacement, change_context(self.request))
        fresh = self.get_queryset().get(pk=replacement.pk)
        return Response(
            UnitReplacementSerializer(fresh, context=self.get_serializer_context()).data
        )

    @extend_schema(parameters=[UNIT_PATH], request=None, responses=UnitReplacementSerializer)
    @action(detail=True, methods=["post"])
    def accept(
        self, request: Request, unit_pk: str | None = None, pk: str | None = None
    ) -> Response:
        return self._decide(lifecycle.accept)

    @extend_schema(parameters=[UNIT_PATH], request=None, responses=UnitReplacementSerializer)
    @action(detail=True, methods=["post"])
    def reject(
        self, request: Request, unit_pk: str | None = None, pk: str | None = None
    ) -> Response:
        return self._decide(lifecycle.reject)
