"""Trust roots over the API: the provider registers its own (they count for every tenant), a
tenant's admins their tenant's own. Never changed or deleted; revoked, and kept."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.decorators import action

from tenants.api.base import AuditedModelViewSet, ScopedViewSetMixin, change_context
from tenants.choices import TENANT_ROLES, Role
from tenants.sovereignty import services
from tenants.sovereignty.api.serializers import tenant_field
from tenants.sovereignty.models import TrustRoot


class TrustRootSerializer(serializers.ModelSerializer):
    tenant = tenant_field(
        required=False,
        allow_null=True,
        help_text="Empty for the provider's roots (they count for every tenant).",
    )
    public_key = serializers.CharField(
        max_length=1000,
        help_text="Ed25519 public key: PEM (SubjectPublicKeyInfo) or the raw 32 bytes in "
        "base64. Shown as base64.",
    )
    ref = serializers.CharField(
        read_only=True,
        help_text="How a rule's trust_roots names it: provider:<name>, tenant:<name>.",
    )
    revoked = serializers.BooleanField(read_only=True)

    class Meta:
        model = TrustRoot
        brief_fields = ["ref", "origin", "revoked"]
        fields = [
            "id",
            "tenant",
            "name",
            "ref",
            "origin",
            "public_key",
            "key_id",
            "description",
            "created_at",
            "revoked",
            "revoked_at",
            "revoked_by",
            "revoked_reason",
        ]
        read_only_fields = [
            "key_id",
            "created_at",
            "revoked_at",
            "revoked_by",
            "revoked_reason",
        ]


class RevokeSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class TrustRootViewSet(AuditedModelViewSet):
    """Keys whose Ed25519 signatures make a firmware release trusted, per origin; an
    artifact_provenance rule names them in ``trust_roots``. Registered, listed and revoked;
    never changed or deleted."""

    queryset = TrustRoot.objects.all()
    serializer_class = TrustRootSerializer
    filterset_fields = ["origin", "key_id", "tenant"]
    ordering_fields = ["origin", "name", "created_at"]
    read_roles = frozenset({Role.PROVIDER_ADMIN, *TENANT_ROLES})
    write_roles = frozenset({Role.PROVIDER_ADMIN, Role.TENANT_ADMIN})
    http_method_names = ["get", "post", "head", "options"]

    def get_queryset(self):
        queryset = super(ScopedViewSetMixin, self).get_queryset()
        visible = self.actor.visible_tenant_ids()
        if visible is None:
            return queryset
        return queryset.filter(tenant__isnull=True) | queryset.filter(tenant_id__in=visible)

    def _check_target_tenant(self, instance) -> None:
        """The provider writes only its own roots (a tenant's are part of its boundary, changed
        only by the tenant); a tenant's admins only their tenant's."""
        if instance.tenant_id is None:
            allowed = self.actor.provider_role == Role.PROVIDER_ADMIN and not self.actor.read_only
        else:
            allowed = self.actor.provider_role is None and self.actor.can_write(
                instance.tenant_id, {Role.TENANT_ADMIN}
            )
        if not allowed:
            raise exceptions.PermissionDenied(
                "The provider registers and revokes its own trust roots, a tenant's admins "
                "their tenant's.",
                code="role",
            )

    def save_instance(self, instance, ctx):
        return services.register_trust_root(instance, ctx)

    @extend_schema(request=RevokeSerializer, responses=TrustRootSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        """Revoke: from now on this root verifies no signature (409 if already revoked)."""
        root = self.get_object()
        self._check_target_tenant(root)
        body = RevokeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        root = services.revoke_trust_root(
            root, change_context(request), body.validated_data["reason"]
        )
        return self.object_response(root)
