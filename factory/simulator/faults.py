"""Fault injection at the rates of HARDWARE.md, deterministic under a seed.

Rates are per unit-day (per chip, per link, per tray, per feed, per CDU). Each tick draws from
its own ``random.Random`` so the same seed and the same sequence of ticks give the same faults,
whatever the wall clock does. ``scale`` multiplies every rate (a demo of a dozen servers would
otherwise wait weeks for its first fault).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from factory.wire import EventKind

# Llama 3 on 16,384 H100 over 54 days (HARDWARE.md): failures attributable to chips, per chip-day.
_CHIP_DAYS = 16_384 * 54
CHIP_FAILURE = (148 + 19 + 17 + 6 + 6) / _CHIP_DAYS  # faulty chip, SRAM, GSP, SDC, thermal
HBM_FAILURE = 72 / _CHIP_DAYS  # HBM3: surfaces as uncorrectable ECC
LINK_DOWN = 35 / _CHIP_DAYS  # network switch/cable: a link down long enough to kill a job
# Not in HARDWARE.md: estimates, marked as such wherever they are shown.
ECC_STORM = 1.0e-4  # bursts of corrected ECC per chip-day (estimate)
LINK_FLAP = 10 * LINK_DOWN  # short flaps, mostly under the 7 s that kills a job (estimate)
FEED_LOSS = 1.0e-3  # per feed-day (estimate)
COOLANT_EXCURSION = 1.0e-3  # per CDU-day (estimate)
# HARDWARE.md gives no leak rate, so none is drawn: leaks come only when injected. Set
# ``FaultRates.leak`` (per tray-day) for a site that should leak on its own.
LEAK = 0.0

KINDS = tuple(EventKind)


@dataclass(frozen=True)
class FaultRates:
    chip_failure: float = CHIP_FAILURE
    hbm_failure: float = HBM_FAILURE
    ecc_storm: float = ECC_STORM
    link_flap: float = LINK_FLAP
    link_down: float = LINK_DOWN
    feed_loss: float = FEED_LOSS
    coolant_excursion: float = COOLANT_EXCURSION
    leak: float = LEAK
    scale: float = 1.0

    def per_tick(self, name: str, units: int, dt: float) -> float:
        """Expected events among ``units`` in ``dt`` seconds."""
        return getattr(self, name) * self.scale * units * dt / 86_400


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str  # device serial
    chip: int | None = None
    link: int | None = None
    feed: str | None = None
    duration_s: float = 0.0
    #: The accelerator tray a leak is at; when absent, the tray of ``chip`` (then tray 0).
    tray: int | None = None


@dataclass
class FaultInjector:
    """Draws faults for one device; ``seed`` and the device's name fix the sequence."""

    seed: int
    name: str
    rates: FaultRates = field(default_factory=FaultRates)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.seed}:{self.name}")

    def _count(self, expected: float) -> int:
        """A Poisson draw (Knuth): exact for the tiny means per tick seen here."""
        if expected <= 0:
            return 0
        limit, k, p = math.exp(-expected), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1

    def server_faults(
        self, chips: int, links_per_chip: int, dt: float, *, trays: int = 0
    ) -> list[Fault]:
        faults = []
        for name, kind in (
            ("chip_failure", EventKind.CHIP_FAILURE),
            ("hbm_failure", EventKind.HBM_FAILURE),
            ("ecc_storm", EventKind.ECC_STORM),
        ):
            for _ in range(self._count(self.rates.per_tick(name, chips, dt))):
                faults.append(Fault(kind, self.name, chip=self.rng.randrange(chips)))
        for name, kind, mean_s in (
            ("link_flap", EventKind.LINK_FLAP, 2.0),
            ("link_down", EventKind.LINK_DOWN, 60.0),
        ):
            for _ in range(self._count(self.rates.per_tick(name, chips, dt))):
                faults.append(
                    Fault(
                        kind,
                        self.name,
                        chip=self.rng.randrange(chips),
                        link=self.rng.randrange(links_per_chip),
                        duration_s=round(self.rng.expovariate(1 / mean_s), 1),
                    )
                )
        # A leak lasts until repaired; a zero rate draws nothing (the sequence above is kept).
        for _ in range(self._count(self.rates.per_tick("leak", trays, dt))):
            faults.append(Fault(EventKind.LEAK, self.name, tray=self.rng.randrange(trays)))
        return faults

    def pdu_faults(self, feeds: list[str], dt: float) -> list[Fault]:
        return [
            Fault(
                EventKind.FEED_LOSS,
                self.name,
                feed=self.rng.choice(feeds),
                duration_s=round(self.rng.uniform(30, 300), 1),
            )
            for _ in range(self._count(self.rates.per_tick("feed_loss", len(feeds), dt)))
        ]

    def cdu_faults(self, dt: float) -> list[Fault]:
        faults = [
            Fault(
                EventKind.COOLANT_EXCURSION,
                self.name,
                duration_s=round(self.rng.uniform(60, 600), 1),
            )
            for _ in range(self._count(self.rates.per_tick("coolant_excursion", 1, dt)))
        ]
        # The CDU's own leaks, at the tray rate per CDU-day; until repaired (duration 0).
        for _ in range(self._count(self.rates.per_tick("leak", 1, dt))):
            faults.append(Fault(EventKind.LEAK, self.name))
        return faults
