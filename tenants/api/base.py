"""Base API pieces shared by every app: tenant-scoped, role-checked, audited viewsets."""

from __future__ import annotations

from rest_framework import exceptions, serializers, viewsets

from tenants.access import Actor, actor_for, scope_queryset
from tenants.choices import AuditSource, Role
from tenants.services.changes import ChangeContext, delete_object, save_object


def change_context(request) -> ChangeContext:
    return ChangeContext(
        actor=actor_for(request.user),
        source=AuditSource.API,
        request_id=getattr(request, "request_id", ""),
    )


class ScopedViewSetMixin:
    """Scopes the queryset to the caller's tenants: others' objects are simply not there (404).

    ``tenant_fields``: lookups from the model to its owning tenant id, OR-ed together.
    """

    tenant_fields: tuple[str, ...] = ()
    read_roles = frozenset(Role)
    write_roles = frozenset({Role.PROVIDER_ADMIN})

    @property
    def actor(self) -> Actor:
        return actor_for(self.request.user)

    def get_queryset(self):
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):
            return queryset.none()
        return scope_queryset(queryset, self.actor, self.tenant_fields)


class AuditedModelViewSet(ScopedViewSetMixin, viewsets.ModelViewSet):
    """CRUD through the change services: validated by the model, audited, all-or-nothing."""

    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def save_instance(self, instance, ctx: ChangeContext):
        """Override to call a domain service (e.g. one that creates chips with a server)."""
        return save_object(instance, ctx)

    def delete_instance(self, instance, ctx: ChangeContext) -> None:
        delete_object(instance, ctx)

    def _check_target_tenant(self, instance) -> None:
        if not self.actor.can_write(getattr(instance, "owning_tenant_id", None), self.write_roles):
            raise exceptions.PermissionDenied("Your role may not change this.", code="role")

    def perform_create(self, serializer):
        model = serializer.Meta.model
        instance = model(**serializer.validated_data)
        self._check_target_tenant(instance)
        serializer.instance = self.save_instance(instance, change_context(self.request))

    def perform_update(self, serializer):
        instance = serializer.instance
        for name, value in serializer.validated_data.items():
            setattr(instance, name, value)
        self._check_target_tenant(instance)  # e.g. moving it into another tenant's rack
        serializer.instance = self.save_instance(instance, change_context(self.request))

    def perform_destroy(self, instance):
        self.delete_instance(instance, change_context(self.request))


class ScopedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A foreign key the caller may only point at objects it can see: another tenant's rack is
    'does not exist', exactly as if it did not."""

    def __init__(self, *, tenant_fields: tuple[str, ...], **kwargs):
        self.tenant_fields = tenant_fields
        super().__init__(**kwargs)

    def get_queryset(self):
        queryset = super().get_queryset()
        request = self.context.get("request")
        if request is None or not request.user.is_authenticated:
            return queryset.none()
        return scope_queryset(queryset, actor_for(request.user), self.tenant_fields)
