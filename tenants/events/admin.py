from django.contrib import admin

from tenants.admin_base import ReadOnlyAdmin
from tenants.events import selectors
from tenants.events.models import Event


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    """The customers' event log: read-only, written only by ``services.emit`` in the change's
    own transaction. Only committed events (numbered) are listed."""

    list_display = ["sequence", "occurred_at", "kind", "tenant", "subject_type", "subject_name"]
    list_filter = ["kind", "subject_type", "tenant"]
    search_fields = ["subject_name", "subject_id"]
    list_select_related = ["tenant"]
    ordering = ["-sequence"]
    fields = [
        "sequence",
        "occurred_at",
        "kind",
        "tenant",
        "subject_type",
        "subject_id",
        "subject_name",
        "data",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return selectors.committed()
