from django.contrib import admin

from factory.agents.models import AgentCommand, SiteAgent
from tenants.admin_base import ReadOnlyAdmin


@admin.register(SiteAgent)
class SiteAgentAdmin(ReadOnlyAdmin):
    """Issued and revoked through the API (the token is shown once there)."""

    list_display = ["name", "site", "prefix", "last_seen_at", "revoked_at"]
    list_filter = ["site"]


@admin.register(AgentCommand)
class AgentCommandAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "site", "ultraserver", "state", "created_at", "completed_at"]
    list_filter = ["state", "kind", "site"]
    search_fields = ["id", "ultraserver__serial"]
    list_select_related = ["site", "ultraserver"]
