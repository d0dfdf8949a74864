from django.contrib import admin

from tenants.admin_base import AuditedModelAdmin, ReadOnlyAdmin
from tenants.sovereignty.models import (
    AccessRequest,
    DecisionRecord,
    JurisdictionGroup,
    ProtectedAsset,
    SovereigntyRule,
    TransferBasis,
)


@admin.register(JurisdictionGroup)
class JurisdictionGroupAdmin(AuditedModelAdmin):
    list_display = ["code", "name", "tenant"]
    list_filter = ["tenant"]
    search_fields = ["code", "name"]


@admin.register(TransferBasis)
class TransferBasisAdmin(AuditedModelAdmin):
    list_display = ["tenant", "kind", "destination", "reference", "valid_until"]
    list_filter = ["kind", "tenant"]


@admin.register(ProtectedAsset)
class ProtectedAssetAdmin(AuditedModelAdmin):
    """Placement changes go through the API, where the sovereignty rules are enforced."""

    list_display = ["name", "tenant", "kind", "classification", "site"]
    list_filter = ["kind", "classification", "tenant"]
    search_fields = ["name"]
    readonly_fields = ["site"]


@admin.register(SovereigntyRule)
class SovereigntyRuleAdmin(ReadOnlyAdmin):
    """Read-only here: tenants write their rules through the API (validated, versioned)."""

    list_display = ["name", "tenant", "kind", "status", "version", "activated_at", "sentence"]
    list_filter = ["status", "kind", "tenant"]
    search_fields = ["name"]


@admin.register(AccessRequest)
class AccessRequestAdmin(admin.ModelAdmin):
    list_display = [
        "site",
        "person",
        "status",
        "starts_at",
        "ends_at",
        "requested_by",
        "decided_by",
    ]
    list_filter = ["status", "tenant"]
    readonly_fields = ["status", "decided_by", "decided_at"]

    def has_change_permission(self, request, obj=None):
        return False  # approval is the tenant's, through the API


@admin.register(DecisionRecord)
class DecisionRecordAdmin(ReadOnlyAdmin):
    """The access-transparency log: read-only, append-only."""

    list_display = [
        "occurred_at",
        "action",
        "resource_repr",
        "allowed",
        "actor_username",
        "principal",
    ]
    list_filter = ["allowed", "action", "resource_type"]
    search_fields = ["resource_repr", "actor_username", "principal", "request_id"]
