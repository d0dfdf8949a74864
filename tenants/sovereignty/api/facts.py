"""Provider fact changes announced to a tenant, and its acknowledgement, through the API."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action

from tenants.api.base import ConditionalWritesMixin, ScopedViewSetMixin, change_context
from tenants.choices import TENANT_ROLES, Role
from tenants.sovereignty.models import FactChangeNotice, PendingFactChange
from tenants.sovereignty.services import facts


class PendingFactChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = PendingFactChange
        fields = [
            "id",
            "subject_type",
            "subject_id",
            "subject_repr",
            "before",
            "after",
            "requested_by",
            "created_at",
            "effective_at",
            "status",
            "applied_at",
        ]
        read_only_fields = fields


class FlipSerializer(serializers.Serializer):
    subject = serializers.ChoiceField(choices=["asset", "access-request"])
    id = serializers.CharField()
    name = serializers.CharField()
    becomes = serializers.ChoiceField(
        choices=["allowed", "denied"],
        help_text="What the decision, allowed or denied now, turns to.",
    )


class FactChangeNoticeSerializer(serializers.ModelSerializer):
    change = PendingFactChangeSerializer(read_only=True)
    flips = FlipSerializer(many=True, read_only=True)

    class Meta:
        model = FactChangeNotice
        brief_fields = ["id", "acknowledged_at"]
        fields = ["id", "tenant", "change", "flips", "acknowledged_at", "acknowledged_by"]
        read_only_fields = fields


class FactChangeNoticeViewSet(
    ConditionalWritesMixin, ScopedViewSetMixin, viewsets.ReadOnlyModelViewSet
):
    """Changes of provider-maintained facts (site country, accreditations, air-gapped; a
    technician's nationality, residency, clearance) that would flip the tenant's live decisions:
    announced before they take effect. Acknowledging one (the tenant's admins) lets it apply
    once every tenant told has done so."""

    queryset = FactChangeNotice.objects.select_related("change")
    serializer_class = FactChangeNoticeSerializer
    ordering_fields = ["id"]
    tenant_fields = ("tenant",)
    read_roles = frozenset({Role.PROVIDER_ADMIN, *TENANT_ROLES})
    write_roles = frozenset({Role.TENANT_ADMIN})
    object_actions = frozenset({"acknowledge"})

    @extend_schema(request=None, responses=FactChangeNoticeSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        notice = facts.acknowledge(self.get_object(), change_context(request))
        return self.object_response(notice)
