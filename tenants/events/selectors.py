"""Reads of the event log that the API, the watch stream and the admin share."""

from __future__ import annotations

from django.db.models import QuerySet

from tenants.events.models import Event


def committed() -> QuerySet[Event]:
    """Every event whose transaction committed, oldest first. A row without a ``sequence``
    belongs to a transaction still open (its own reader's, at most: no one else can see it)
    and is never shown: its number, and so its place in the log, is not decided yet."""
    return (
        Event.objects.filter(sequence__isnull=False).select_related("tenant").order_by("sequence")
    )


def after(events: QuerySet[Event], position: int) -> QuerySet[Event]:
    """The events of ``events`` after the one numbered ``position``, oldest first. Numbers are
    drawn at commit in commit order, so a reader that has seen ``position`` finds every later
    event here, however long its transaction took."""
    return events.filter(sequence__gt=position).order_by("sequence")


def newest_position() -> int:
    """The id of the newest committed event (0: none yet): a stream that starts here sends
    only what commits from now on. One index lookup (``sequence`` is unique)."""
    newest = (
        Event.objects.filter(sequence__isnull=False)
        .order_by("-sequence")
        .values_list("sequence", flat=True)
        .first()
    )
    return int(newest or 0)
