from django.db import models


class TenantKind(models.TextChoices):
    GOVERNMENT = "government", "Government"
    ENTERPRISE = "enterprise", "Regulated enterprise"
    RESEARCH = "research", "Research"


class Role(models.TextChoices):
    TENANT_ADMIN = "tenant-admin", "Tenant admin"
    TENANT_OPERATOR = "tenant-operator", "Tenant operator"
    TENANT_VIEWER = "tenant-viewer", "Tenant viewer"
    PROVIDER_ADMIN = "provider-admin", "Provider admin"
    PROVIDER_TECHNICIAN = "provider-technician", "Provider technician"


PROVIDER_ROLES = frozenset({Role.PROVIDER_ADMIN, Role.PROVIDER_TECHNICIAN})
TENANT_ROLES = frozenset({Role.TENANT_ADMIN, Role.TENANT_OPERATOR, Role.TENANT_VIEWER})
ALL_ROLES = PROVIDER_ROLES | TENANT_ROLES


class Clearance(models.TextChoices):
    """Security clearance levels, ordered; the sovereignty engine compares by rank."""

    NONE = "none", "None"
    RESTRICTED = "restricted", "Restricted"
    CONFIDENTIAL = "confidential", "Confidential"
    SECRET = "secret", "Secret"
    TOP_SECRET = "top-secret", "Top secret"

    @classmethod
    def rank(cls, value: str) -> int:
        return list(cls.values).index(value)


class TokenScope(models.TextChoices):
    READ = "read", "Read only"
    WRITE = "write", "Read and write"


class AuditAction(models.TextChoices):
    CREATE = "create", "Create"
    UPDATE = "update", "Update"
    DELETE = "delete", "Delete"


class AuditSource(models.TextChoices):
    API = "api", "REST API"
    ADMIN = "admin", "Admin UI"
    CONSOLE = "console", "Operator console"
    COMMAND = "command", "Management command"
    SYSTEM = "system", "System"
