import django_filters

from tenants.filters import UtcDateTimeFilter
from tenants.sovereignty.models import (
    AccessRequest,
    DecisionRecord,
    ProtectedAsset,
    SovereigntyRule,
)


class ProtectedAssetFilterSet(django_filters.FilterSet):
    class Meta:
        model = ProtectedAsset
        fields = ["tenant", "kind", "classification", "site"]


class RuleFilterSet(django_filters.FilterSet):
    class Meta:
        model = SovereigntyRule
        fields = ["tenant", "kind", "status"]


class AccessRequestFilterSet(django_filters.FilterSet):
    class Meta:
        model = AccessRequest
        fields = ["tenant", "site", "person", "status"]


class DecisionRecordFilterSet(django_filters.FilterSet):
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
        ]
