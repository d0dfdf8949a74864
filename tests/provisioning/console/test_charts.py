"""The console's pure drawing helpers."""

import datetime as dt

from provisioning.console.charts import (
    RANGES,
    chart,
    elevation,
    heat_class,
    nice_step,
    percent,
    pick_range,
    ramp,
    ticks,
    time_ticks,
    trays,
    y_range,
)
from tests.support.purity import imported_modules


def test_pure_modules_import_no_django():
    for path in (
        "provisioning/console/charts.py",
        "factory/telemetry/rules.py",
        "factory/telemetry/codec.py",
    ):
        assert not any(m.startswith("django") for m in imported_modules(path)), path


def test_percent_is_bounded_and_safe():
    assert percent(50, 200) == 25.0
    assert percent(300, 200) == 100.0
    assert percent(None, 200) == 0.0 and percent(5, 0) == 0.0


def test_cells():
    assert heat_class("health", None, "failed") == "bad"
    assert heat_class("health", 80.0, "degraded") == "warn"
    assert heat_class("temp", 86.0, "ok") == "scaled"
    assert heat_class("temp", None, "ok") == "nodata"  # never a number, never "ok"
    assert heat_class("util", None, "failed") == "nodata"


T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def minutes(values):
    return [(T0 + dt.timedelta(minutes=i), v) for i, v in enumerate(values)]


def test_nice_steps_and_ticks_are_round():
    assert nice_step(10) == 2 and nice_step(100) == 20 and nice_step(0.7) == 0.2
    assert nice_step(0) == 1.0
    assert ticks(55, 70) == [55, 60, 65, 70]
    assert ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_a_flat_temperature_has_a_sane_span_and_draws_flat():
    low, high = y_range([62.9] * 60, 10.0)
    assert high - low >= 10 and low <= 62.9 <= high
    assert (low, high) == (56.0, 68.0)  # 10 °C about the value, on round ticks
    drawn = chart(
        [("hottest", minutes([62.9] * 60))],
        start=T0,
        end=T0 + dt.timedelta(minutes=59),
        unit="°C",
        min_span=10.0,
    )
    ys = {float(p.split(",")[1]) for p in drawn.series[0].segments[0].split()}
    assert len(ys) == 1  # flat is flat
    y = ys.pop()
    assert drawn.top + 10 < y < drawn.plot_bottom - 10  # in the middle, not at an edge
    assert drawn.unit == "°C" and drawn.y_ticks and drawn.x_ticks


def test_noise_is_not_stretched_to_full_height():
    drawn = chart(
        [("hottest", minutes([62.9, 63.0] * 30))],
        start=T0,
        end=T0 + dt.timedelta(minutes=59),
        unit="°C",
        min_span=10.0,
    )
    ys = [float(p.split(",")[1]) for p in drawn.series[0].segments[0].split()]
    plot_h = drawn.plot_bottom - drawn.top
    assert max(ys) - min(ys) < plot_h * 0.05  # 0.1 °C of noise is 0.1 °C high


def test_ranges_respect_floor_ceiling_and_zero():
    assert y_range([0.5, 0.6], 10.0, floor=0.0)[0] == 0.0  # power is never negative
    low, high = y_range([40, 60], 10.0, zero_based=True, ceiling=100)
    assert low == 0 and 60 <= high <= 100
    assert y_range([99.0], 10.0, ceiling=100.0)[1] == 100.0
    assert y_range([], 10.0) == (0.0, 10.0)
    wide = y_range([10, 90], 10.0)
    assert wide[0] <= 10 and wide[1] >= 90


def test_missing_values_make_gaps_not_joins():
    values = [60.0] * 10 + [None] * 5 + [61.0] * 10
    drawn = chart(
        [("hottest", minutes(values))],
        start=T0,
        end=T0 + dt.timedelta(minutes=24),
        unit="°C",
        min_span=10.0,
    )
    assert len(drawn.series[0].segments) == 2 and drawn.gaps == 1
    # a hole in the series' timestamps (roll-ups missing) is a gap too
    points = minutes([60.0] * 5) + [(T0 + dt.timedelta(minutes=30 + i), 60.0) for i in range(5)]
    holed = chart(
        [("hottest", points)],
        start=T0,
        end=T0 + dt.timedelta(minutes=35),
        unit="°C",
        min_span=10.0,
        max_gap=dt.timedelta(minutes=3),
    )
    assert holed.gaps == 1
    assert chart([("x", minutes([None, None]))], start=T0, end=T0, unit="", min_span=1) is None
    lone = chart(
        [("x", minutes([1.0, None, 2.0, 3.0]))],
        start=T0,
        end=T0 + dt.timedelta(minutes=3),
        unit="kW",
        min_span=1,
    )
    assert len(lone.series[0].dots) == 1 and len(lone.series[0].segments) == 1


def test_time_ticks_are_round_utc_instants():
    got = time_ticks(T0 + dt.timedelta(minutes=7), T0 + dt.timedelta(hours=6, minutes=7))
    assert all(t.minute == 0 and t.tzinfo == dt.UTC for t in got) and 3 <= len(got) <= 7
    week = time_ticks(T0, T0 + dt.timedelta(days=7))
    assert all(t.hour == 0 for t in week)
    drawn = chart(
        [("a", minutes([1.0, 2.0])), ("b", minutes([2.0, 3.0]))],
        start=T0,
        end=T0 + dt.timedelta(hours=1),
        unit="kW",
        min_span=1,
    )
    assert [s.name for s in drawn.series] == ["a", "b"]  # several series: a legend's names
    assert drawn.x_ticks[0].label == "12:00" and drawn.start == "2026-12-01 12:00"


def test_the_range_picker_reads_the_right_resolution():
    assert {k: v[1] for k, v in RANGES.items()} == {
        "1h": "raw",
        "6h": "1m",
        "24h": "1m",
        "7d": "1h",
    }
    assert pick_range("7d") == "7d" and pick_range("bogus") == "1h" and pick_range(None) == "1h"


def test_the_colour_ramp_is_continuous():
    low = ramp(25, 25, 95)[0]
    mid1, mid2 = ramp(60, 25, 95)[0], ramp(61, 25, 95)[0]
    high = ramp(95, 25, 95)[0]
    assert low != high and mid1 != mid2  # per value, not buckets
    assert ramp(-10, 25, 95) == ramp(25, 25, 95) and ramp(200, 25, 95) == ramp(95, 25, 95)
    assert ramp(25, 25, 95)[1] == "#fff" and ramp(95, 25, 95)[1] == "#111"  # readable text


def test_trays_follow_the_physical_layout():
    trn3 = trays(list(range(144)), 4)
    assert (
        len(trn3) == 36 and trn3[0] == (0, [0, 1, 2, 3]) and trn3[35] == (35, [140, 141, 142, 143])
    )
    nvl72 = trays(list(range(72)), 4)
    assert len(nvl72) == 18
    holed = trays([0, 1, 3, 5], 4)
    assert holed == [(0, [0, 1, None, 3]), (1, [None, 5, None, None])]
    assert trays([], 4) == []


def test_elevation_runs_top_down_with_heights():
    slots = elevation(48, [(1, 42, "trn3"), (45, 2, "switch")])
    assert [(s.top_u, s.height_u, s.item) for s in slots] == [
        (48, 1, None),
        (47, 1, None),
        (46, 2, "switch"),
        (44, 1, None),
        (43, 1, None),
        (42, 42, "trn3"),
    ]
    assert sum(s.height_u for s in slots) == 48
    assert len(elevation(4, [])) == 4
    overlapping = elevation(10, [(1, 5, "a"), (3, 2, "b")])
    assert [s.item for s in overlapping if s.item] == ["b"]  # the higher one wins, once
