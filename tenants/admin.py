from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from tenants.admin_base import AuditedModelAdmin, ReadOnlyAdmin
from tenants.forms import AdminLoginForm
from tenants.models import ApiToken, AuditEvent, Membership, Tenant, User

# A locked-out username is told so on the admin's log-in page too (tenants.forms).
admin.site.login_form = AdminLoginForm


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Tenant)
class TenantAdmin(AuditedModelAdmin):
    list_display = ["name", "slug", "kind", "country", "contact_email", "created_at"]
    list_filter = ["kind", "country"]
    search_fields = ["name", "slug", "contact_email"]
    prepopulated_fields = {"slug": ["name"]}
    bulk_delete = False  # sites, memberships and the audit log hold on to a tenant


@admin.register(User)
class PersonAdmin(UserAdmin):
    list_display = [
        "username",
        "first_name",
        "last_name",
        "email",
        "nationality",
        "residency",
        "clearance",
        "is_active",
    ]
    list_filter = ["clearance", "nationality", "residency", "is_active", "memberships__role"]
    fieldsets = [
        *UserAdmin.fieldsets,
        ("Sovereignty facts", {"fields": ["nationality", "residency", "clearance"]}),
    ]
    inlines = [MembershipInline]
    readonly_fields = ["last_login", "date_joined"]  # the system's clocks

    def save_model(self, request, obj, form, change):
        """Nationality, residency and clearance: audited into every affected tenant's log and
        held back with notice when they would flip a live decision (issue 14)."""
        from tenants.admin_base import admin_context
        from tenants.errors import Conflict
        from tenants.sovereignty.services import facts

        try:
            facts.save_person(obj, admin_context(request))
        except Conflict as refused:
            self.message_user(request, f"Not saved: {refused.message}", level="error")


@admin.register(Membership)
class MembershipAdmin(AuditedModelAdmin):
    list_display = ["user", "role", "tenant"]
    list_filter = ["role", "tenant"]
    search_fields = ["user__username", "user__last_name", "tenant__name"]
    autocomplete_fields = ["user", "tenant"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are issued with `manage.py issue_token` or the API (shown once); here they are
    inspected and revoked."""

    list_display = [*ApiToken.SHOWN, "user"]
    list_filter = ["scope", "revoked_at"]
    search_fields = ["name", "user__username", "prefix"]
    readonly_fields = ["user", *ApiToken.SHOWN]
    exclude = ["digest"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        from tenants.admin_base import admin_context
        from tenants.services.tokens import revoke_token

        ctx = admin_context(request)
        for token in queryset:
            revoke_token(token, ctx)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only: the audit log is append-only."""

    list_display = [
        "occurred_at",
        "actor_username",
        "source",
        "action",
        "object_type",
        "object_repr",
        "tenant_id",
        "request_id",
    ]
    list_filter = ["action", "source", "object_type"]
    search_fields = ["actor_username", "object_repr", "object_id", "request_id"]
    date_hierarchy = "occurred_at"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]
