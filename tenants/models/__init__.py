from tenants.models.audit import AuditEvent
from tenants.models.people import Membership, User
from tenants.models.tenant import Tenant
from tenants.models.tokens import ApiToken

__all__ = ["ApiToken", "AuditEvent", "Membership", "Tenant", "User"]
