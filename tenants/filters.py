import datetime as dt

import django_filters


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """ISO 8601 date-time, compared in UTC. Python accepts offsets up to ±23:59 but PostgreSQL
    only ±15:59, so normalising first keeps any valid instant a valid query."""

    def filter(self, qs, value):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return super().filter(qs, value)
