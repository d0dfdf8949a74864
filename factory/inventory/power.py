"""Power math: a pure core (no Django), unit-tested directly.

Feed capacity (W) = V × A × (√3 for three-phase) × max utilization × power factor.
Under A+B (2N) redundancy either path must carry the whole load alone, so the protected budget
is the smaller path's capacity, never the sum.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

SQRT3 = math.sqrt(3)


def feed_capacity_watts(
    voltage: float,
    amperage: float,
    three_phase: bool,
    max_utilization_percent: float = 80.0,
    power_factor: float = 0.95,
) -> float:
    phase_factor = SQRT3 if three_phase else 1.0
    return (
        float(voltage)
        * float(amperage)
        * phase_factor
        * float(max_utilization_percent)
        / 100.0
        * float(power_factor)
    )


@dataclass(frozen=True)
class FeedCapacity:
    path: str  # "A" or "B"
    watts: float


@dataclass(frozen=True)
class PowerBudget:
    watts: float
    redundant: bool  # both paths present: the load survives the loss of either
    by_path: dict[str, float]


def protected_budget(feeds: Iterable[FeedCapacity]) -> PowerBudget:
    """The load a rack may carry. With A and B paths: the weaker path (2N). With one path only:
    that path, flagged as not redundant."""
    by_path: dict[str, float] = {}
    for feed in feeds:
        by_path[feed.path] = by_path.get(feed.path, 0.0) + feed.watts
    if "A" in by_path and "B" in by_path:
        return PowerBudget(min(by_path["A"], by_path["B"]), True, by_path)
    return PowerBudget(sum(by_path.values()), False, by_path)


def kw(watts: float) -> str:
    return f"{watts / 1000:.1f} kW"


def budget_shortfall(
    budget_label: str, budget_w: float, committed_w: float, needed_w: float, needed_label: str
) -> str | None:
    """A sentence naming the budget and the numbers when ``needed_w`` does not fit, else None."""
    if committed_w + needed_w <= budget_w + 1e-6:
        return None
    return (
        f"{budget_label} {kw(budget_w)}, committed {kw(committed_w)}, "
        f"{needed_label} needs {kw(needed_w)}"
    )


def shrink_shortfall(budget_label: str, new_budget_w: float, committed_w: float) -> str | None:
    """A sentence when a budget would drop below what is already committed, else None."""
    if committed_w <= new_budget_w + 1e-6:
        return None
    return f"{budget_label} would drop to {kw(new_budget_w)}, below the committed {kw(committed_w)}"


def span_overlaps(start_a: int, height_a: int, start_b: int, height_b: int) -> bool:
    """Do rack-unit spans [start, start+height) overlap?"""
    return start_a < start_b + height_b and start_b < start_a + height_a
