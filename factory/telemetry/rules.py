"""Health rules over one UltraServer's sample (pure: no Django; unit-tested directly).

Counters are compared with the previous sample of the same server, so a rule fires on what
happened since, not on history. Each finding names its subject so the caller can keep one
open fault per subject and rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeGuard

from factory.wire import FaultRule, FeedReading, HealthCode, Metric

HEALTH_FAILED = int(HealthCode.FAILED)


@dataclass(frozen=True)
class Limits:
    link_down_seconds: float = 7.0  # a link down longer than ~7 s kills a collective job
    throttle_seconds: float = 5.0
    coolant_max_c: float = 45.0


@dataclass(frozen=True)
class Finding:
    rule: str
    detail: str
    chip: int | None = None
    subject: str = ""  # a feed's or device's name, for findings not about one chip


def _increase(new: list | None, old: list | None, index: int) -> float:
    if new is None:
        return 0.0
    before = old[index] if old is not None and index < len(old) else 0
    after = new[index]
    # A counter that went down was reset (chip replaced, BMC rebooted): count from zero.
    return after - before if after >= before else after


def _changed(new: list | None, old: list | None) -> TypeGuard[list]:
    """True when ``new`` was shipped and differs from ``old`` (so ``new`` is a list)."""
    return new is not None and new != old


def link_outages(new: list | None, old: list | None, outage: list | None) -> list | None:
    """Seconds each chip's links have been going down without a break, across samples: a
    link-down counter that grew since the last sample extends the outage, one that did not ends
    it. (Comparing single intervals would miss 5 s + 5 s of one outage split by a sample.)"""
    if new is None:
        return None
    if old is None or new == old:  # no baseline yet (lifetime counters), or nothing grew
        return [0.0] * len(new)
    carried = []
    for index in range(len(new)):
        grew = _increase(new, old, index)
        before = outage[index] if outage is not None and index < len(outage) else 0.0
        carried.append(before + grew if grew > 0 else 0.0)
    return carried


def chip_findings(
    new: dict[str, list | None], old: dict[str, list | None] | None, limits: Limits
) -> tuple[list[Finding], list | None]:
    """``new``/``old``: metric -> per-chip values (None where the metric was not shipped);
    ``old`` may carry ``link_outage_s`` from the previous call. Returns the findings and the
    link outages to carry to the next sample."""
    old = old or {}
    findings: list[Finding] = []
    health, before = new.get(Metric.HEALTH), old.get(Metric.HEALTH)
    if _changed(health, before) and max(health, default=0) >= HEALTH_FAILED:
        for index, value in enumerate(health):
            was = before[index] if before is not None and index < len(before) else 0
            if value >= HEALTH_FAILED > was:
                findings.append(
                    Finding(FaultRule.CHIP_DOWN, f"chip {index} reports Critical health", index)
                )
    checks = (
        (
            Metric.ECC_UNCORRECTED,
            FaultRule.ECC_UNCORRECTABLE,
            0.0,
            "{n:.0f} uncorrectable HBM ECC errors",
        ),
        (
            Metric.THROTTLE_S,
            FaultRule.THERMAL_THROTTLE,
            limits.throttle_seconds,
            "throttled {n:.1f} s",
        ),
    )
    for metric, rule, limit, text in checks:
        values = new.get(metric)
        # Fast path: nothing changed since the last sample, nothing to look at chip by chip.
        if not _changed(values, old.get(metric)):
            continue
        # Throttle seconds are a lifetime counter: without a previous sample there is no
        # "since". An uncorrectable error on record is a fault whenever it is first seen.
        if old.get(metric) is None and metric != Metric.ECC_UNCORRECTED:
            continue
        for index in range(len(values)):
            grew = _increase(values, old.get(metric), index)
            if grew > limit:
                findings.append(Finding(rule, f"chip {index}: {text.format(n=grew)}", index))
    before_outage = old.get("link_outage_s")
    outage = link_outages(new.get(Metric.LINK_DOWN_S), old.get(Metric.LINK_DOWN_S), before_outage)
    if outage is not None and max(outage, default=0.0) > limits.link_down_seconds:
        limit = limits.link_down_seconds
        for index, seconds in enumerate(outage):
            was = before_outage[index] if before_outage and index < len(before_outage) else 0.0
            if seconds > limit >= was:  # once per outage, when it crosses the limit
                findings.append(
                    Finding(FaultRule.LINK_DOWN, f"chip {index}: links down {seconds:.1f} s", index)
                )
    return findings, outage


def feed_findings(feeds: dict[str, dict]) -> list[Finding]:
    """``feeds``: feed name -> {up: bool, power_w: float} (``FeedReading``)."""
    return [
        Finding(FaultRule.FEED_LOSS, f"power feed {name} is down", subject=name)
        for name, reading in sorted(feeds.items())
        if not reading.get(FeedReading.UP, True)
    ]


def coolant_findings(source: str, supply_c: float | None, limits: Limits) -> list[Finding]:
    if supply_c is not None and supply_c > limits.coolant_max_c:
        return [
            Finding(
                FaultRule.COOLANT_EXCURSION,
                f"{source}: coolant supply {supply_c:.1f} °C over {limits.coolant_max_c:.0f} °C",
                subject=source,
            )
        ]
    return []
