from tenants.filters import FilterSet, UtcDateTimeFilter
from tenants.models import AuditEvent, Tenant


class TenantFilterSet(FilterSet):
    class Meta:
        model = Tenant
        fields = ["slug", "name", "kind", "country", "created_at"]
        search_fields = ["slug", "name"]


class AuditEventFilterSet(FilterSet):
    since = UtcDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    until = UtcDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = [
            "action",
            "source",
            "object_type",
            "object_id",
            "tenant_id",
            "request_id",
            "actor_id",
            ("actor", "actor_username"),
            "on_behalf_of",
            "cause_type",
            "cause_id",
            "occurred_at",
        ]
        search_fields = ["object_repr", "actor_username", "object_id"]
