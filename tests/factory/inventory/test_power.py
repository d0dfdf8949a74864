"""The pure power core: no database, no Django."""

import math

import pytest

from factory.inventory.power import (
    FeedCapacity,
    budget_shortfall,
    feed_capacity_watts,
    protected_budget,
    shrink_shortfall,
    span_overlaps,
)


def test_three_phase_feed_capacity_follows_the_formula():
    # 400 V × 400 A × √3 × 80 % × 0.95
    assert feed_capacity_watts(400, 400, True, 80, 0.95) == pytest.approx(
        400 * 400 * math.sqrt(3) * 0.8 * 0.95
    )
    assert feed_capacity_watts(400, 400, True, 80, 0.95) == pytest.approx(210_617.4, abs=0.1)


def test_single_phase_has_no_root_three():
    assert feed_capacity_watts(230, 32, False, 80, 0.95) == pytest.approx(230 * 32 * 0.8 * 0.95)


def test_a_plus_b_budget_is_one_path_not_the_sum():
    budget = protected_budget([FeedCapacity("A", 100_000), FeedCapacity("B", 100_000)])
    assert budget.watts == 100_000
    assert budget.redundant


def test_unequal_paths_protect_only_the_weaker():
    budget = protected_budget(
        [FeedCapacity("A", 120_000), FeedCapacity("A", 30_000), FeedCapacity("B", 100_000)]
    )
    assert budget.by_path == {"A": 150_000, "B": 100_000}
    assert budget.watts == 100_000


def test_single_path_is_its_capacity_and_not_redundant():
    budget = protected_budget([FeedCapacity("A", 80_000)])
    assert budget.watts == 80_000 and not budget.redundant
    assert protected_budget([]).watts == 0


def test_shortfall_names_budget_and_numbers():
    assert budget_shortfall(
        "rack FRA1-R03 power budget", 138_000, 120_000, 30_000, "Trn3 UltraServer"
    ) == ("rack FRA1-R03 power budget 138.0 kW, committed 120.0 kW, Trn3 UltraServer needs 30.0 kW")
    assert budget_shortfall("x", 150_000, 120_000, 30_000, "y") is None  # exactly fits


def test_shrink_shortfall():
    assert shrink_shortfall("rack R power budget", 50_000, 60_000) == (
        "rack R power budget would drop to 50.0 kW, below the committed 60.0 kW"
    )
    assert shrink_shortfall("rack R power budget", 60_000, 60_000) is None


@pytest.mark.parametrize(
    ("a", "ha", "b", "hb", "overlap"),
    [
        (1, 42, 43, 4, False),
        (1, 42, 42, 4, True),
        (10, 5, 1, 10, True),
        (10, 5, 1, 9, False),
    ],
)
def test_rack_unit_spans(a, ha, b, hb, overlap):
    assert span_overlaps(a, ha, b, hb) is overlap


def test_power_core_imports_no_django():
    from tests.support.purity import imported_modules

    imported = imported_modules("factory/inventory/power.py")
    assert not {m for m in imported if m.split(".")[0] in {"django", "rest_framework", "tenants"}}
