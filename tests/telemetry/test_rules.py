"""Health rules (pure)."""

from factory.telemetry.rules import Limits, chip_findings, coolant_findings, feed_findings

LIMITS = Limits(link_down_seconds=7, throttle_seconds=5, coolant_max_c=45)


def sample(n=4, **overrides):
    base = {
        "health": [0] * n,
        "ecc_uncorrected": [0] * n,
        "link_down_s": [0.0] * n,
        "throttle_s": [0.0] * n,
    }
    base.update(overrides)
    return base


def test_quiet_sample_finds_nothing():
    assert chip_findings(sample(), sample(), LIMITS) == []
    assert chip_findings(sample(), None, LIMITS) == []


def test_chip_down_fires_once_on_the_change():
    before, after = sample(), sample(health=[0, 0, 2, 0])
    found = chip_findings(after, before, LIMITS)
    assert [(f.rule, f.chip) for f in found] == [("chip-down", 2)]
    assert chip_findings(after, after, LIMITS) == []


def test_counters_compare_with_the_previous_sample():
    before = sample(ecc_uncorrected=[0, 3, 0, 0], link_down_s=[0, 0, 10.0, 0])
    after = sample(
        ecc_uncorrected=[0, 4, 0, 0], link_down_s=[0, 0, 12.0, 8.0], throttle_s=[6.0, 0, 0, 1.0]
    )
    found = {(f.rule, f.chip) for f in chip_findings(after, before, LIMITS)}
    # chip 2's link was down only 2 s more; chip 3's 8 s is past the 7 s limit
    assert found == {("ecc-uncorrectable", 1), ("link-down", 3), ("thermal-throttle", 0)}


def test_a_counter_reset_counts_from_zero():
    before = sample(ecc_uncorrected=[5, 0, 0, 0])
    after = sample(ecc_uncorrected=[1, 0, 0, 0])  # the chip was replaced, then one error
    assert [(f.rule, f.chip) for f in chip_findings(after, before, LIMITS)] == [
        ("ecc-uncorrectable", 0)
    ]


def test_missing_metrics_are_not_judged():
    after = {"health": None, "ecc_uncorrected": None, "link_down_s": None, "throttle_s": None}
    assert chip_findings(after, sample(), LIMITS) == []


def test_feed_and_coolant():
    assert [f.subject for f in feed_findings({"A": {"up": False}, "B": {"up": True}})] == ["A"]
    assert coolant_findings("CDU1", 44.0, LIMITS) == []
    assert coolant_findings("CDU1", 48.0, LIMITS)[0].rule == "coolant-excursion"
