"""Health rules (pure)."""

from factory.telemetry.rules import Limits, chip_findings, coolant_findings, feed_findings
from factory.wire import FaultRule, FeedReading, Metric

CHIP_DOWN, ECC, LINK_DOWN = FaultRule.CHIP_DOWN, FaultRule.ECC_UNCORRECTABLE, FaultRule.LINK_DOWN


def findings(new, old, limits=None):
    return chip_findings(new, old, limits or LIMITS)[0]


LIMITS = Limits(link_down_seconds=7, throttle_seconds=5, coolant_max_c=45)


def sample(n=4, **overrides):
    base = {
        Metric.HEALTH: [0] * n,
        Metric.ECC_UNCORRECTED: [0] * n,
        Metric.LINK_DOWN_S: [0.0] * n,
        Metric.THROTTLE_S: [0.0] * n,
    }
    base.update(overrides)
    return base


def test_quiet_sample_finds_nothing():
    assert findings(sample(), sample()) == []
    assert findings(sample(), None) == []


def test_chip_down_fires_once_on_the_change():
    before, after = sample(), sample(health=[0, 0, 2, 0])
    found = findings(after, before)
    assert [(f.rule, f.chip) for f in found] == [(CHIP_DOWN, 2)]
    assert findings(after, after) == []


def test_counters_compare_with_the_previous_sample():
    before = sample(ecc_uncorrected=[0, 3, 0, 0], link_down_s=[0, 0, 10.0, 0])
    after = sample(
        ecc_uncorrected=[0, 4, 0, 0], link_down_s=[0, 0, 12.0, 8.0], throttle_s=[6.0, 0, 0, 1.0]
    )
    found = {(f.rule, f.chip) for f in findings(after, before)}
    # chip 2's link was down only 2 s more; chip 3's 8 s is past the 7 s limit
    assert found == {(ECC, 1), (LINK_DOWN, 3), (FaultRule.THERMAL_THROTTLE, 0)}


def test_a_counter_reset_counts_from_zero():
    before = sample(ecc_uncorrected=[5, 0, 0, 0])
    after = sample(ecc_uncorrected=[1, 0, 0, 0])  # the chip was replaced, then one error
    assert [(f.rule, f.chip) for f in findings(after, before)] == [(ECC, 0)]


def test_missing_metrics_are_not_judged():
    after = dict.fromkeys(sample(), None)
    assert findings(after, sample()) == []


def test_one_outage_split_across_samples_is_still_one_outage():
    outage = None
    old = sample()
    seen = []
    for down in (4.0, 8.0, 12.0, 12.0, 15.0):  # 4 s + 4 s + 4 s, a pause, then 3 s
        new = sample(link_down_s=[0.0, down, 0.0, 0.0])
        found, outage = chip_findings(new, {**old, "link_outage_s": outage}, LIMITS)
        seen.append(([(f.rule, f.chip) for f in found], outage[1]))
        old = new
    assert seen == [
        ([], 4.0),
        ([(LINK_DOWN, 1)], 8.0),  # crosses 7 s: one finding
        ([], 12.0),  # still the same outage: no second finding
        ([], 0.0),  # the link came back
        ([], 3.0),  # a new, short outage
    ]


def test_lifetime_counters_need_a_baseline():
    history = sample(link_down_s=[0.0, 500.0, 0.0, 0.0], throttle_s=[900.0, 0, 0, 0])
    assert findings(history, None) == []  # first sample of a server: no "since" yet
    assert [f.rule for f in findings(sample(ecc_uncorrected=[0, 2, 0, 0]), None)] == [ECC]


def test_feed_and_coolant():
    feeds = {"A": {FeedReading.UP: False}, "B": {FeedReading.UP: True}}
    assert [f.subject for f in feed_findings(feeds)] == ["A"]
    assert coolant_findings("CDU1", 44.0, LIMITS) == []
    assert coolant_findings("CDU1", 48.0, LIMITS)[0].rule == FaultRule.COOLANT_EXCURSION
