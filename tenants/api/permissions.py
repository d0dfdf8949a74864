from rest_framework import exceptions, permissions

from tenants.access import actor_for
from tenants.choices import ALL_ROLES, Role


class RolePermission(permissions.BasePermission):
    """Role rules for every API view.

    Views declare ``read_roles`` (default: every role) and ``write_roles`` (default: provider
    admins). A tenant role lets one write only objects of that tenant; the object check uses the
    object's ``owning_tenant_id``.
    """

    def has_permission(self, request, view):
        if not request.user or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated()
        actor = actor_for(request.user)
        if not actor.can_read(getattr(view, "read_roles", ALL_ROLES)):
            raise exceptions.PermissionDenied("You have no role that may read this.", code="role")
        if request.method in permissions.SAFE_METHODS:
            return True
        if actor.read_only:
            raise exceptions.PermissionDenied("This token is read-only.", code="token_read_only")
        if not actor.may_write_somewhere(_write_roles(view)):
            raise exceptions.PermissionDenied("Your role may not change this.", code="role")
        return True

    def has_object_permission(self, request, view, obj):
        if request.method in permissions.SAFE_METHODS:
            return True
        actor = actor_for(request.user)
        if not actor.can_write(getattr(obj, "owning_tenant_id", None), _write_roles(view)):
            raise exceptions.PermissionDenied("Your role may not change this.", code="role")
        return True


def _write_roles(view):
    return getattr(view, "write_roles", {Role.PROVIDER_ADMIN})


class OwnObjectPermission(RolePermission):
    """For objects that belong to a person (API tokens), not to a tenant: your own only."""

    def has_object_permission(self, request, view, obj):
        return obj.user_id == request.user.pk
