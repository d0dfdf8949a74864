"""The console's pure drawing helpers."""

from provisioning.console.charts import heat_class, line, percent
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


def test_line_scales_into_the_box():
    chart = line([("10:00", 1.0), ("10:01", 3.0), ("10:02", 2.0)], width=100, height=50)
    first, middle, last = (tuple(map(float, p.split(","))) for p in chart.points.split())
    assert (first[0], middle[0], last[0]) == (0.0, 50.0, 100.0)
    assert middle[1] < last[1] < first[1]  # higher values are drawn higher up
    assert (chart.low, chart.high, chart.first, chart.last) == (1.0, 3.0, "10:00", "10:02")
    assert line([("10:00", 1.0)]) is None  # one point is not a line
    assert line([("a", None), ("b", None)]) is None


def test_cells():
    assert heat_class("health", None, "failed") == "bad"
    assert heat_class("temp", 86.0, "ok") == "bad"
    assert heat_class("temp", 80.0, "ok") == "warn"
    assert heat_class("util", 0.9, "ok") == "busy"
    assert heat_class("util", 0.1, "ok") == "idle"
