"""External key stores the customer holds (XKS-style), through the API.

Only the tenant's admins register, change, connect or disconnect them; the provider reads them
(it must know why an asset is unavailable) and can never change their state.
"""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action

from tenants.api.base import AuditedModelViewSet, change_context
from tenants.choices import TENANT_ROLES, AuditAction, Role
from tenants.services import audit
from tenants.services.changes import ChangeContext, save_object
from tenants.sovereignty.api.serializers import site_field, tenant_field
from tenants.sovereignty.models import ExternalKeyStore
from tenants.sovereignty.services import keys


class ExternalKeyStoreSerializer(serializers.ModelSerializer):
    tenant = tenant_field()
    sites = site_field(
        many=True, required=False, help_text="The tenant's sites whose assets use these keys."
    )

    class Meta:
        model = ExternalKeyStore
        brief_fields = ["name", "state"]
        fields = [
            "id",
            "tenant",
            "name",
            "endpoint_url",
            "country",
            "sites",
            "state",
            "state_changed_at",
            "state_changed_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "state",
            "state_changed_at",
            "state_changed_by",
            "created_at",
            "updated_at",
        ]

    def validate(self, attrs):
        tenant = attrs.get("tenant") or getattr(self.instance, "tenant", None)
        if self.instance is not None and tenant != self.instance.tenant:
            raise serializers.ValidationError(
                {
                    "tenant": [
                        serializers.ErrorDetail("a key store's tenant cannot change", "immutable")
                    ]
                }
            )
        for site in attrs.get("sites", []):
            if tenant is not None and site.tenant_id != tenant.pk:
                raise serializers.ValidationError(
                    {
                        "sites": [
                            serializers.ErrorDetail(
                                f"{site} is not the tenant's site", "foreign_site"
                            )
                        ]
                    }
                )
        return attrs


def save_store(store: ExternalKeyStore, sites, ctx: ChangeContext) -> ExternalKeyStore:
    """The store and the sites it serves, in one audited transaction (the sites, a relation
    the row's snapshot does not hold, are audited on their own when they change)."""
    with transaction.atomic():
        before = sorted(store.sites.values_list("pk", flat=True)) if store.pk else None
        store = save_object(store, ctx)
        if sites is not None:
            store.sites.set(sites)
            after = sorted(store.sites.values_list("pk", flat=True))
            if after != (before or []):
                audit.record(
                    actor=ctx.actor,
                    action=AuditAction.UPDATE,
                    instance=store,
                    before={"sites": before or []},
                    after={"sites": after},
                    source=ctx.source,
                    request_id=ctx.request_id,
                )
    return store


class ExternalKeyStoreViewSet(AuditedModelViewSet):
    """Key stores the customer holds. Disconnecting one (its admins only) makes every asset of
    the tenant at the sites it serves unavailable and, with a key-custody rule naming the store,
    denies new placements there until it is reconnected."""

    queryset = ExternalKeyStore.objects.prefetch_related("sites")
    serializer_class = ExternalKeyStoreSerializer
    ordering_fields = ["name", "state"]
    tenant_fields = ("tenant",)
    read_roles = frozenset({Role.PROVIDER_ADMIN, *TENANT_ROLES})
    write_roles = frozenset({Role.TENANT_ADMIN})
    object_actions = frozenset({"connect", "disconnect"})

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        sites = data.pop("sites", [])
        instance = ExternalKeyStore(**data)
        self._check_target_tenant(instance)
        serializer.instance = save_store(instance, sites, change_context(self.request))

    def perform_update(self, serializer):
        instance = serializer.instance
        data = dict(serializer.validated_data)
        sites = data.pop("sites", None)
        for name, value in data.items():
            setattr(instance, name, value)
        self._check_target_tenant(instance)
        serializer.instance = save_store(instance, sites, change_context(self.request))

    def _set(self, request, connected: bool):
        store = keys.set_connected(self.get_object(), connected, change_context(request))
        return self.object_response(store)

    @extend_schema(request=None, responses=ExternalKeyStoreSerializer)
    @action(detail=True, methods=["post"])
    def disconnect(self, request, pk=None):
        """The customer pulls its keys: dependent assets unavailable, placements there denied."""
        return self._set(request, False)

    @extend_schema(request=None, responses=ExternalKeyStoreSerializer)
    @action(detail=True, methods=["post"])
    def connect(self, request, pk=None):
        """The customer restores its keys: the assets are available and placements judged again."""
        return self._set(request, True)
