from django.contrib import admin

from tenants.admin_base import AuditedModelAdmin, ReadOnlyAdmin
from tenants.errors import Denied
from tenants.sovereignty import services
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
class AccessRequestAdmin(AuditedModelAdmin):
    """A request made here is made as through the API: by the provider, for the site's tenant,
    saved by ``request_access`` (validated, audited, and announced to the tenant by an
    ``access_request.created`` event). Deciding is the tenant's, through the API; a request is
    part of the lockbox's record, so it is never changed or deleted here."""

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
    fields = ["site", "person", "reason", "starts_at", "ends_at"]
    readonly_fields = ["tenant", "requested_by", "status", "decided_by", "decided_at"]

    def get_fields(self, request, obj=None):
        return self.fields if obj is None else [*self.readonly_fields, *self.fields]

    def has_change_permission(self, request, obj=None):
        return False  # approval is the tenant's, through the API

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if not change:
            obj.requested_by = request.user
            obj.tenant_id = obj.site.tenant_id
        super().save_model(request, obj, form, change)

    def save_instance(self, obj, ctx):
        if ctx.actor.provider_role is None:
            raise Denied("Only the provider requests access.", code="role")
        return services.request_access(obj, ctx)


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
