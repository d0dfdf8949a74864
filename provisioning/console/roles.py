"""Who may do what on the console's pages, decided once for the views and the lists that
offer the forms (so a form is shown exactly to those whose post would be accepted). Imports
no console view: the views import this."""

from __future__ import annotations

from tenants.access import Actor
from tenants.choices import Role


def tenant_admin_of(actor: Actor, tenant_id: int) -> bool:
    """A tenant's admin, never the provider: who decides the tenant's windows and access."""
    return actor.can_write(tenant_id, {Role.TENANT_ADMIN}) and not actor.provider_role


def may_dispatch(actor: Actor) -> bool:
    """Provider staff (admins and technicians) dispatch a technician to a waiting step."""
    return actor.is_provider_admin or actor.provider_role == Role.PROVIDER_TECHNICIAN
