"""Pure drawing helpers for the console: bars and SVG line charts (no Django)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def percent(part: float | None, whole: float | None) -> float:
    if not part or not whole:
        return 0.0
    return round(min(100.0, 100.0 * part / whole), 1)


@dataclass(frozen=True)
class Line:
    points: str  # SVG polyline points
    low: float
    high: float
    first: str
    last: str


def line(
    values: Sequence[tuple[str, float | None]], width: int = 600, height: int = 120
) -> Line | None:
    """``values``: (label, value) in time order → a polyline scaled into the box; a missing
    value (None) is skipped."""
    known = [(label, v) for label, v in values if v is not None]
    if len(known) < 2:
        return None
    low = min(v for _, v in known)
    high = max(v for _, v in known)
    span = (high - low) or 1.0
    step = width / (len(known) - 1)
    points = " ".join(
        f"{i * step:.1f},{height - (v - low) / span * (height - 10) - 5:.1f}"
        for i, (_, v) in enumerate(known)
    )
    return Line(points, low, high, known[0][0], known[-1][0])


def heat_class(metric: str, value: float | None, health: str) -> str:
    """A CSS class for one chip cell; never colour alone (the template adds a label and a
    pattern per class)."""
    if metric == "health" or value is None:
        return {"failed": "bad", "degraded": "warn", "unknown": "unknown"}.get(health, "ok")
    if metric == "temp":
        return "bad" if value >= 85 else "warn" if value >= 75 else "ok"
    return "busy" if value >= 0.8 else "ok" if value >= 0.3 else "idle"
