"""Pure drawing helpers for the console: bars, SVG charts with axes, the chip heatmap's colour
scale and tray layout, and the rack elevation's geometry (no Django).

Pictures must tell the truth: a flat series draws flat (every metric has a minimum y-span), a
missing value is a gap (never joined across, never drawn as a number), and every axis says its
unit. Times are UTC."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def percent(part: float | None, whole: float | None) -> float:
    if not part or not whole:
        return 0.0
    return round(min(100.0, 100.0 * part / whole), 1)


# --- scales and ticks ------------------------------------------------------------------------


def nice_step(span: float, count: int = 5) -> float:
    """A round step (1, 2 or 5 × 10ⁿ) that cuts ``span`` into about ``count`` intervals."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude * (1 + 1e-9):
            return factor * magnitude
    return 10 * magnitude


def y_range(
    values: Sequence[float | None],
    min_span: float,
    *,
    floor: float | None = None,
    ceiling: float | None = None,
    zero_based: bool = False,
) -> tuple[float, float]:
    """The y-axis of a chart: the data's range widened to at least ``min_span`` about its
    middle (so 62.9 °C all hour is a flat line, not noise stretched to full height), kept
    within ``floor``/``ceiling`` (power is never negative), from zero when ``zero_based``, then
    rounded outward to tick steps."""
    known = [v for v in values if v is not None and math.isfinite(v)]
    low, high = (min(known), max(known)) if known else (0.0, min_span)
    if zero_based:
        low = min(low, 0.0)
    if high - low < min_span:
        middle = (low + high) / 2
        low, high = middle - min_span / 2, middle + min_span / 2
    if floor is not None and low < floor:
        low, high = floor, max(high, floor + min_span)
    if ceiling is not None and high > ceiling:
        high, low = ceiling, min(low, ceiling - min_span)
        if floor is not None:
            low = max(low, floor)
    step = nice_step(high - low)
    return math.floor(low / step + 1e-9) * step, math.ceil(high / step - 1e-9) * step


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round values from ``low`` to ``high`` inclusive (both already on a step from
    ``y_range``)."""
    step = nice_step(high - low, count)
    first = math.ceil(low / step - 1e-9) * step
    out = []
    value = first
    while value <= high + step * 1e-6:
        out.append(round(value, 10))
        value += step
    return out


TIME_STEPS = [60 * m for m in (1, 2, 5, 10, 15, 30)] + [3600 * h for h in (1, 2, 3, 6, 12, 24)]


def time_ticks(start: dt.datetime, end: dt.datetime, count: int = 6) -> list[dt.datetime]:
    """Instants on a round UTC minute/hour/day boundary between ``start`` and ``end``."""
    span = (end - start).total_seconds()
    step = next((s for s in TIME_STEPS if span / s <= count), TIME_STEPS[-1])
    epoch = start.astimezone(dt.UTC).timestamp()
    first = math.ceil(epoch / step) * step
    out = []
    t = first
    while t <= end.astimezone(dt.UTC).timestamp():
        out.append(dt.datetime.fromtimestamp(t, dt.UTC))
        t += step
    return out


def fmt_number(value: float) -> str:
    """A tick label without noise: 60, 62.5, 0.25."""
    if abs(value - round(value)) < 1e-9:
        return str(round(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


# --- time-series charts ----------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    at: float  # pixels along the axis
    label: str


@dataclass(frozen=True)
class Series:
    name: str
    segments: list[str]  # SVG polyline points, one per unbroken run
    dots: list[tuple[float, float]]  # lone points (a run of one) drawn as dots
    css: str
    low: float | None
    high: float | None
    last: float | None


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    top: int
    right: int
    bottom: int
    unit: str
    y_min: float
    y_max: float
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    series: list[Series]
    start: str
    end: str
    gaps: int  # how many breaks the series have (missing data)
    summary: str = field(default="")

    @property
    def plot_right(self) -> int:
        return self.width - self.right

    @property
    def plot_bottom(self) -> int:
        return self.height - self.bottom


Point = tuple[dt.datetime, float | None]


def chart(
    series: Sequence[tuple[str, Sequence[Point]]],
    *,
    start: dt.datetime,
    end: dt.datetime,
    unit: str,
    min_span: float,
    floor: float | None = None,
    ceiling: float | None = None,
    zero_based: bool = False,
    max_gap: dt.timedelta | None = None,
    width: int = 640,
    height: int = 200,
) -> Chart | None:
    """Named series of (UTC instant, value) → a chart with y ticks in ``unit`` and UTC time
    ticks from ``start`` to ``end``. A None value, or two points further apart than
    ``max_gap``, break the line: missing data shows as a gap. None when nothing is known."""
    values = [v for _, points in series for _, v in points]
    if not any(v is not None for v in values):
        return None
    left, top, right, bottom = 52, 10, 12, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    y_min, y_max = y_range(values, min_span, floor=floor, ceiling=ceiling, zero_based=zero_based)
    t0, t1 = start.timestamp(), end.timestamp()
    t_span = (t1 - t0) or 1.0

    def x(t: dt.datetime) -> float:
        return left + (t.timestamp() - t0) / t_span * plot_w

    def y(v: float) -> float:
        return top + plot_h - (v - y_min) / ((y_max - y_min) or 1.0) * plot_h

    out = []
    gaps = 0
    for n, (name, points) in enumerate(series):
        runs: list[list[tuple[float, float]]] = [[]]
        previous: dt.datetime | None = None
        for t, v in sorted(points, key=lambda p: p[0]):
            if t < start or t > end:
                continue
            broken = v is None or (
                max_gap is not None and previous is not None and t - previous > max_gap
            )
            if broken and runs[-1]:
                runs.append([])
            if v is not None:
                runs[-1].append((round(x(t), 1), round(y(v), 1)))
                previous = t
            else:
                previous = None
        runs = [r for r in runs if r]
        gaps += max(len(runs) - 1, 0)
        known = [v for t, v in points if v is not None and start <= t <= end]
        out.append(
            Series(
                name=name,
                segments=[" ".join(f"{a},{b}" for a, b in r) for r in runs if len(r) > 1],
                dots=[r[0] for r in runs if len(r) == 1],
                css=f"s{n}",
                low=min(known) if known else None,
                high=max(known) if known else None,
                last=known[-1] if known else None,
            )
        )
    long_range = t_span > 86400 * 1.5
    x_ticks = [
        Tick(round(x(t), 1), f"{t:%m-%d %H:%M}" if long_range and t.hour == 0 else f"{t:%H:%M}")
        for t in time_ticks(start, end)
    ]
    y_ticks = [Tick(round(y(v), 1), fmt_number(v)) for v in ticks(y_min, y_max)]
    fmt = "%Y-%m-%d %H:%M"
    described = "; ".join(
        f"{s.name} {fmt_number(round(s.low, 1))}–{fmt_number(round(s.high, 1))} {unit}"
        for s in out
        if s.low is not None and s.high is not None
    )
    return Chart(
        width=width,
        height=height,
        left=left,
        top=top,
        right=right,
        bottom=bottom,
        unit=unit,
        y_min=y_min,
        y_max=y_max,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        series=out,
        start=start.astimezone(dt.UTC).strftime(fmt),
        end=end.astimezone(dt.UTC).strftime(fmt),
        gaps=gaps,
        summary=described,
    )


#: The range picker: window, the resolution read for it, and the longest step not a gap.
RANGES: dict[str, tuple[dt.timedelta, str, dt.timedelta]] = {
    "1h": (dt.timedelta(hours=1), "raw", dt.timedelta(seconds=90)),
    "6h": (dt.timedelta(hours=6), "1m", dt.timedelta(minutes=3)),
    "24h": (dt.timedelta(hours=24), "1m", dt.timedelta(minutes=3)),
    "7d": (dt.timedelta(days=7), "1h", dt.timedelta(hours=3)),
}
DEFAULT_RANGE = "1h"


def pick_range(name: str | None) -> str:
    return name if name in RANGES else DEFAULT_RANGE


# --- heatmap: colour scale and tray layout ---------------------------------------------------

#: A perceptual, colour-blind-safe ramp (viridis, sampled at 0, ¼, ½, ¾, 1).
RAMP = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]


def ramp(value: float, low: float, high: float) -> tuple[str, str]:
    """(background, text colour) for ``value`` on the ``low``–``high`` scale: the ramp
    interpolated per value (not buckets); text dark on light cells, light on dark ones."""
    f = 0.0 if high <= low else min(1.0, max(0.0, (value - low) / (high - low)))
    pos = f * (len(RAMP) - 1)
    i = min(int(pos), len(RAMP) - 2)
    a, b = RAMP[i], RAMP[i + 1]
    r, g, bl = (round(a[k] + (b[k] - a[k]) * (pos - i)) for k in range(3))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * bl
    return f"#{r:02x}{g:02x}{bl:02x}", "#111" if luminance > 120 else "#fff"


#: Scale per metric: (low, high, unit, label format). Fixed, so a colour means the same on
#: every server.
SCALES: dict[str, tuple[float, float, str]] = {
    "temp": (25.0, 95.0, "°C"),
    "util": (0.0, 100.0, "%"),
}


def heat_class(metric: str, value: float | None, health: str) -> str:
    """A CSS class for one chip cell; never colour alone (the template adds a label and a
    pattern per class). A value metric without a value is ``nodata``."""
    if metric == "health":
        return {"failed": "bad", "degraded": "warn", "unknown": "unknown"}.get(health, "ok")
    if value is None:
        return "nodata"
    return "scaled"


def trays(indexes: Sequence[int], chips_per_tray: int) -> list[tuple[int, list[int | None]]]:
    """Chip indexes → rows of the physical layout: (tray number, its chips' indexes), tray
    ``t`` holding chips ``t·n … t·n+n-1``; a slot with no chip recorded is None."""
    per = max(chips_per_tray, 1)
    if not indexes:
        return []
    count = max(indexes) // per + 1
    known = set(indexes)
    return [
        (t, [i if i in known else None for i in range(t * per, (t + 1) * per)])
        for t in range(count)
    ]


# --- rack elevation --------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    top_u: int  # the highest U it occupies
    height_u: int
    item: object | None  # None: empty


def elevation(u_height: int, placed: Sequence[tuple[int, int, object]]) -> list[Slot]:
    """A rack from its top U down: ``placed`` is (lowest U, height in U, item); every U not
    occupied is an empty slot of 1 U. Overlaps (should not happen) keep the first."""
    taken: dict[int, tuple[int, int, object]] = {}
    for position, height, item in sorted(placed, key=lambda p: -p[0]):
        units = range(position, position + max(height, 1))
        if any(u in taken for u in units):
            continue
        for u in units:
            taken[u] = (position, height, item)
    top = max([u_height, *taken]) if taken else u_height
    slots = []
    u = top
    while u >= 1:
        if u in taken:
            position, height, item = taken[u]
            slots.append(Slot(u, u - position + 1, item))
            u = position - 1
        else:
            slots.append(Slot(u, 1, None))
            u -= 1
    return slots
