import django_filters

from factory.inventory.choices import (
    ChipHealth,
    FeedPath,
    LifecycleState,
    Phase,
    RackStatus,
    SiteStatus,
)
from factory.inventory.models import Chip, PowerFeed, Rack, Site, UltraServer


class SiteFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search code, name or city")
    status = django_filters.MultipleChoiceFilter(choices=SiteStatus.choices)

    class Meta:
        model = Site
        fields = ["tenant", "country", "code", "status"]

    def search(self, queryset, name, value):
        from django.db.models import Q

        return queryset.filter(
            Q(code__icontains=value) | Q(name__icontains=value) | Q(city__icontains=value)
        )


class RackFilterSet(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=RackStatus.choices)
    tenant = django_filters.NumberFilter(field_name="site__tenant")

    class Meta:
        model = Rack
        fields = ["site", "name", "status", "cooling_type"]


class PowerFeedFilterSet(django_filters.FilterSet):
    path = django_filters.ChoiceFilter(choices=FeedPath.choices)
    phase = django_filters.ChoiceFilter(choices=Phase.choices)
    site = django_filters.NumberFilter(field_name="rack__site")

    class Meta:
        model = PowerFeed
        fields = ["rack", "path", "phase"]


class UltraServerFilterSet(django_filters.FilterSet):
    lifecycle_state = django_filters.MultipleChoiceFilter(choices=LifecycleState.choices)
    site = django_filters.NumberFilter(field_name="rack__site")
    unplaced = django_filters.BooleanFilter(field_name="rack", lookup_expr="isnull")

    class Meta:
        model = UltraServer
        fields = [
            "rack",
            "tenant",
            "model",
            "lifecycle_state",
            "firmware_version",
            "runtime_version",
            "in_maintenance",
            "serial",
        ]


class ChipFilterSet(django_filters.FilterSet):
    health = django_filters.MultipleChoiceFilter(choices=ChipHealth.choices)
    rack = django_filters.NumberFilter(field_name="ultraserver__rack")
    site = django_filters.NumberFilter(field_name="ultraserver__rack__site")

    class Meta:
        model = Chip
        fields = ["ultraserver", "health", "index"]
