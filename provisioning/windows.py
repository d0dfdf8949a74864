"""Maintenance windows in a site's local time (pure: no Django).

A window opens on each listed weekday at ``start`` local time and lasts ``duration``; it may run
past midnight. Daylight-saving gaps are handled by zoneinfo: a 02:30 start that does not exist on
the spring-forward night opens at the equivalent UTC instant.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Window:
    weekdays: frozenset[int]  # 0 = Monday
    start: dt.time
    duration: dt.timedelta
    time_zone: str


def _openings_around(
    window: Window, at: dt.datetime, days_back: int, days_ahead: int
) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    tz = ZoneInfo(window.time_zone)
    local_day = at.astimezone(tz).date()
    for offset in range(-days_back, days_ahead + 1):
        day = local_day + dt.timedelta(days=offset)
        if day.weekday() in window.weekdays:
            opens = dt.datetime.combine(day, window.start, tzinfo=tz)
            yield opens, opens + window.duration


def is_open(window: Window, at: dt.datetime) -> bool:
    return any(opens <= at < closes for opens, closes in _openings_around(window, at, 1, 0))


def current_or_next(window: Window, at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The opening that contains ``at``, else the next one (within a week)."""
    for opens, closes in _openings_around(window, at, 1, 7):
        if closes > at:
            return opens, closes
    raise ValueError("window has no weekdays")


def open_until(windows: list[Window], at: dt.datetime) -> dt.datetime | None:
    """When the latest currently-open window closes, or None if none is open."""
    closing = [current_or_next(w, at)[1] for w in windows if is_open(w, at)]
    return max(closing) if closing else None


def next_opening(windows: list[Window], at: dt.datetime) -> dt.datetime | None:
    openings = [current_or_next(w, at)[0] for w in windows if w.weekdays]
    return min(openings) if openings else None


def describe_opening(opening: dt.datetime, time_zone: str) -> str:
    """An opening as a person at the site and one reading UTC both read it, each right:
    ``2026-12-03 02:00 EST (America/New_York), 07:00 UTC``. (It was once the local time
    labelled "Z".)"""
    local = opening.astimezone(ZoneInfo(time_zone))
    utc = opening.astimezone(dt.UTC)
    day = "" if utc.date() == local.date() else f"{utc:%Y-%m-%d} "
    return f"{local:%Y-%m-%d %H:%M} {local:%Z} ({time_zone}), {day}{utc:%H:%M} UTC"
