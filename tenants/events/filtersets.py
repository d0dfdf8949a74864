from django import forms

from tenants.events.models import Event
from tenants.filters import INT64, FilterSet, LookupFilter


def _event_id() -> forms.Field:
    return forms.IntegerField(min_value=0, max_value=INT64[1])


class EventFilterSet(FilterSet):
    """The event log's filters, for the list and the watch stream alike."""

    after = LookupFilter(
        "sequence",
        "gt",
        item=_event_id,
        schema={"type": "integer", "format": "int64", "minimum": 0, "maximum": INT64[1]},
        many=False,
        label="Only the events after this one: the `id` of the last event seen",
    )

    class Meta:
        model = Event
        fields = ["kind", "subject_type", "subject_id", "tenant", "occurred_at"]
