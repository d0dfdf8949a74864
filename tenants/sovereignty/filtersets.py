import django_filters
from django.db import models
from django.db.models import Q, QuerySet

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


def site_model() -> type[models.Model]:
    """The inventory's Site, which this app may not import: the model a protected asset's
    ``site`` points at."""
    model = ProtectedAsset._meta.get_field("site").related_model
    assert isinstance(model, type) and issubclass(model, models.Model)
    return model


class DecisionRecordFilterSet(FilterSet):
    since = UtcDateTimeFilter(
        field_name="occurred_at", lookup_expr="gte", help_text="At or after this time (UTC)."
    )
    until = UtcDateTimeFilter(
        field_name="occurred_at", lookup_expr="lt", help_text="Before this time (UTC)."
    )
    verdict = django_filters.ChoiceFilter(
        choices=[("allowed", "allowed"), ("denied", "denied")],
        method="filter_verdict",
        help_text="allowed or denied (the same as `allowed=true|false`).",
    )
    site = django_filters.CharFilter(
        method="filter_site", help_text="The site's code (or id), e.g. FRA1."
    )
    person = django_filters.CharFilter(
        method="filter_person", help_text="The person acting or the actor: a username."
    )

    def filter_verdict(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(allowed=value == "allowed")

    def filter_site(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        match = Q(code__iexact=value)
        if value.isdigit() and len(value) < 19:
            match |= Q(pk=int(value))
        return queryset.filter(site_id__in=site_model()._default_manager.filter(match).values("pk"))

    def filter_person(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(principal=value) | Q(actor_username=value))

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
