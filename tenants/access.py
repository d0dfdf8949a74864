"""Who may see and change what. One place for the role rules, used by the API and admin.

Scoping: provider people see every tenant's objects; a tenant's people see only objects of the
tenants they belong to (others are 404, never 403, so existence does not leak).
Writes: a view names the roles that may write; tenant roles count only inside their tenant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tenants.choices import ALL_ROLES, Role


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    username: str
    provider_role: str | None = None
    tenant_roles: dict[int, str] = field(default_factory=dict)
    read_only: bool = False  # a read-scoped token

    @property
    def is_provider_admin(self) -> bool:
        return self.provider_role == Role.PROVIDER_ADMIN

    @property
    def roles(self) -> set[str]:
        roles = set(self.tenant_roles.values())
        if self.provider_role:
            roles.add(self.provider_role)
        return roles

    def visible_tenant_ids(self) -> set[int] | None:
        """None means every tenant."""
        if self.provider_role:
            return None
        return set(self.tenant_roles)

    def can_read(self, read_roles: Iterable[str] = ALL_ROLES) -> bool:
        return bool(self.roles & set(read_roles))

    def may_write_somewhere(self, write_roles: Iterable[str]) -> bool:
        return not self.read_only and bool(self.roles & set(write_roles))

    def can_write(self, tenant_id: int | None, write_roles: Iterable[str]) -> bool:
        """May this actor change an object owned by ``tenant_id`` (None: provider-owned)?"""
        if self.read_only:
            return False
        write_roles = set(write_roles)
        if self.provider_role in write_roles:
            return True
        return tenant_id is not None and self.tenant_roles.get(tenant_id) in write_roles


SYSTEM = Actor(user_id=None, username="system", provider_role=Role.PROVIDER_ADMIN)


def actor_for(user, *, read_only: bool = False) -> Actor:
    """Build (and cache on the user object) the actor for a logged-in user: one query."""
    if user is None or not user.is_authenticated:
        return Actor(user_id=None, username="anonymous")
    cached = getattr(user, "_factory_actor", None)
    if cached is None:
        provider_role = None
        tenant_roles: dict[int, str] = {}
        for tenant_id, role in user.memberships.values_list("tenant_id", "role"):
            if tenant_id is None:
                provider_role = role
            else:
                tenant_roles[tenant_id] = role
        if user.is_superuser and provider_role is None:
            provider_role = Role.PROVIDER_ADMIN
        cached = Actor(user.pk, user.get_username(), provider_role, tenant_roles)
        user._factory_actor = cached
    if read_only and not cached.read_only:
        return Actor(
            cached.user_id,
            cached.username,
            cached.provider_role,
            cached.tenant_roles,
            read_only=True,
        )
    return cached


def scope_queryset(queryset, actor: Actor, tenant_fields: Iterable[str]):
    """Limit ``queryset`` to what ``actor`` may see; ``tenant_fields`` are lookups to a tenant
    id, OR-ed together (e.g. an UltraServer is visible by its site or its allocation)."""
    visible = actor.visible_tenant_ids()
    if visible is None:
        return queryset
    if not visible:
        return queryset.none()
    from django.db.models import Q

    condition = Q()
    for lookup in tenant_fields:
        condition |= Q(**{f"{lookup}__in": visible})
    return queryset.filter(condition)
