from tenants.filters import FilterSet, UtcDateTimeFilter
from tenants.sovereignty.models import (
    AccessRequest,
    DecisionRecord,
    ProtectedAsset,
    SovereigntyRule,
)


class ProtectedAssetFilterSet(FilterSet):
    class Meta:
        model = ProtectedAsset
        fields = ["tenant", "kind", "classification", "site", "name", "created_at", "updated_at"]
        search_fields = ["name"]


class RuleFilterSet(FilterSet):
    class Meta:
        model = SovereigntyRule
        fields = [
            "tenant",
            "kind",
            "status",
            "name",
            "version",
            "created_at",
            "updated_at",
            "activated_at",
            "retired_at",
        ]
        search_fields = ["name"]


class AccessRequestFilterSet(FilterSet):
    class Meta:
        model = AccessRequest
        fields = [
            "tenant",
            "site",
            "person",
            "status",
            "starts_at",
            "ends_at",
            "created_at",
            "decided_at",
        ]
        search_fields = ["reason"]


class DecisionRecordFilterSet(FilterSet):
    since = UtcDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    until = UtcDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = DecisionRecord
        fields = [
            "action",
            "allowed",
            "site_id",
            "resource_type",
            "resource_id",
            "principal",
            "tenant_id",
            "request_id",
            "occurred_at",
        ]
        search_fields = ["resource_repr", "principal", "actor_username"]
