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


class AuditCause(models.TextChoices):
    """What made a change the control plane carried out itself (``AuditEvent.cause_type``; its
    ``cause_id`` names which one). Empty: a person's own request, whose actor and request id say
    it all."""

    WORKFLOW = "workflow", "Workflow"  # cause_id: the workflow's id
    JOB = "job", "Scheduled job"  # cause_id: the JobRun's id
    RULE = "rule", "Health rule"  # cause_id: the fault's id (when known)
    AGENT = "agent", "Site agent"  # cause_id: the site agent's id
