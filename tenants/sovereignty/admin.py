from django.contrib import admin

from tenants.admin_base import AuditedModelAdmin, ReadOnlyAdmin, admin_context
from tenants.errors import Denied
from tenants.sovereignty import services
from tenants.sovereignty.models import (
    AccessRequest,
    DecisionRecord,
    JurisdictionGroup,
    LockboxPolicy,
    ProtectedAsset,
    SovereigntyRule,
    TransferBasis,
    TrustRoot,
)


@admin.register(JurisdictionGroup)
class JurisdictionGroupAdmin(ReadOnlyAdmin):
    """Read-only here: built-in groups change only by a new version (``manage.py
    revise_group``), and a tenant's own groups are part of its boundary, changed only by its
    admins through the API."""

    list_display = ["code", "name", "tenant", "version"]
    list_filter = ["tenant"]
    search_fields = ["code", "name"]


@admin.register(TransferBasis)
class TransferBasisAdmin(ReadOnlyAdmin):
    """Read-only here: a legal basis satisfies a tenant's transfer rule, so only the tenant's
    admins record one (through the API)."""

    list_display = ["tenant", "kind", "destination", "reference", "valid_until"]
    list_filter = ["kind", "tenant"]


@admin.register(ProtectedAsset)
class ProtectedAssetAdmin(AuditedModelAdmin):
    """Placement changes go through the API, where the sovereignty rules are enforced."""

    list_display = ["name", "tenant", "kind", "classification", "site"]
    list_filter = ["kind", "classification", "tenant"]
    search_fields = ["name"]
    readonly_fields = ["site"]

    def get_readonly_fields(self, request, obj=None):
        # An asset's tenant never changes (save_asset refuses it too).
        declared = list(super().get_readonly_fields(request, obj))
        return [*declared, "tenant"] if obj is not None else declared

    def save_instance(self, obj, ctx):
        return services.save_asset(obj, ctx)


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
        "justification",
        "scope",
        "status",
        "break_glass",
        "starts_at",
        "ends_at",
        "requested_by",
        "decided_by",
    ]
    list_filter = ["status", "justification", "break_glass", "tenant"]
    fields = [
        "site",
        "person",
        "reason",
        "justification",
        "scope",
        "office_country",
        "physical_country",
        "starts_at",
        "ends_at",
    ]
    readonly_fields = [
        "tenant",
        "requested_by",
        "status",
        "approval",
        "approvals_needed",
        "decided_by",
        "decided_at",
        "closed_by",
        "closed_at",
        "reviewed_by",
        "reviewed_at",
    ]

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


@admin.register(TrustRoot)
class TrustRootAdmin(AuditedModelAdmin):
    """The provider's trust roots (keys that sign firmware, per origin), registered here; a
    tenant's own are the tenant's, through the API (read-only here). A root is never changed
    or deleted: it is revoked, and kept."""

    list_display = ["name", "origin", "tenant", "key_id", "created_at", "revoked_at"]
    list_filter = ["origin", "tenant"]
    search_fields = ["name", "key_id"]
    fields = ["name", "origin", "public_key", "description"]
    readonly_fields = ["tenant", "key_id", "created_at", "revoked_at", "revoked_by"]
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        return self.fields if obj is None else [*self.readonly_fields, *self.fields]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        obj.tenant = None  # the provider's: a tenant registers its own through the API
        super().save_model(request, obj, form, change)

    def save_instance(self, obj, ctx):
        return services.register_trust_root(obj, ctx)

    @admin.action(description="Revoke the selected provider trust roots")
    def revoke(self, request, queryset):
        ctx = admin_context(request)
        done = 0
        for root in queryset.filter(tenant__isnull=True, revoked_at__isnull=True):
            services.revoke_trust_root(root, ctx, reason="revoked in the admin")
            done += 1
        self.message_user(request, f"Revoked {done} trust root(s).")


@admin.register(LockboxPolicy)
class LockboxPolicyAdmin(ReadOnlyAdmin):
    """Read-only here: the lockbox policy is the tenant's, changed by its admins via the API."""

    list_display = ["tenant", "default_approval", "break_glass_minutes", "updated_at"]
