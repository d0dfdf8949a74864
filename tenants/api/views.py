from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.response import Response

from tenants.api.base import AuditedModelViewSet, ScopedViewSetMixin, change_context
from tenants.api.permissions import OwnObjectPermission
from tenants.api.serializers import (
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
    AuditEventSerializer,
    IssuedApiTokenSerializer,
    TenantSerializer,
)
from tenants.choices import TENANT_ROLES, Role
from tenants.filtersets import AuditEventFilterSet, TenantFilterSet
from tenants.models import ApiToken, AuditEvent, Tenant
from tenants.services.tokens import issue_token, revoke_token


class TenantViewSet(AuditedModelViewSet):
    """Tenants. A tenant's people see their own; provider admins manage all."""

    queryset = Tenant.objects.all()
    serializer_class = TenantSerializer
    filterset_class = TenantFilterSet
    ordering_fields = ["name", "created_at"]
    tenant_fields = ("id",)


class AuditEventViewSet(ScopedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """The append-only audit log. Tenants read the events about their own objects."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    ordering_fields = ["occurred_at", "id"]
    tenant_fields = ("tenant_id",)
    read_roles = frozenset({Role.PROVIDER_ADMIN, *TENANT_ROLES})


class ApiTokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your own API tokens. Creating one shows it once; deleting one revokes it."""

    serializer_class = ApiTokenSerializer
    permission_classes = [OwnObjectPermission]
    ordering_fields = ["created_at", "expires_at"]
    write_roles = frozenset(Role)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApiToken.objects.none()
        return ApiToken.objects.filter(user=self.request.user)

    @extend_schema(request=ApiTokenCreateSerializer, responses={201: IssuedApiTokenSerializer})
    def create(self, request):
        params = ApiTokenCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        token, clear = issue_token(request.user, change_context(request), **params.validated_data)
        body = IssuedApiTokenSerializer(token, context={"clear_token": clear}).data
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        revoke_token(instance, change_context(self.request))
