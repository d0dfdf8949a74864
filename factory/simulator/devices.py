"""The simulated devices of one site and their state over simulated time.

A site advances in fixed ticks (``Site.advance``), so a seed fixes every fault; commands from
the agent (firmware updates, resets, burn-in, drain) change state between ticks and finish on
the simulated clock, like the real thing that takes minutes.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from factory import wire
from factory.simulator.faults import Fault, FaultInjector, FaultRates
from factory.simulator.flavours import DEFAULT as DEFAULT_FLAVOUR
from factory.simulator.flavours import FLAVOURS, Flavour
from factory.simulator.hardware import (
    HEALTH_DEGRADED,
    HEALTH_FAILED,
    SPECS,
    Chip,
    SystemSpec,
    step_chip,
)
from factory.wire import BurnInResult, EventKind, HardwareState, OemAction

DEFAULT_COOLANT_C = 30.0
EXCURSION_RISE_K = 18.0


@dataclass
class Task:
    """A Redfish Task: long operations answer 202 and are polled."""

    id: str
    name: str
    done_at: float
    ok: bool
    message: str
    result: dict = field(default_factory=dict)
    apply: Callable[[], None] | None = None  # run once when the task completes successfully
    finished: bool = False


class Bmc:
    """The BMC of one UltraServer: its chips, A/B firmware banks, power and drain state."""

    def __init__(
        self,
        serial: str,
        family: str,
        *,
        seed: int,
        rates: FaultRates,
        firmware: str = "2026.09.1",
        rack: str = "",
        position: int = 0,
        flash_seconds: float = 20.0,
        flash_failure_rate: float = 0.02,
        burn_in_seconds: float = 10.0,
        flavour: Flavour = DEFAULT_FLAVOUR,
    ):
        self.serial = serial
        self.flavour = flavour
        self.spec: SystemSpec = SPECS[family]
        self.rack = rack
        self.position = position
        self.chips = [
            Chip(i, links_down_until=[0.0] * self.spec.links_per_chip)
            for i in range(self.spec.chips)
        ]
        self.firmware_active = firmware
        self.firmware_inactive = ""
        self.switched_on = True  # ComputerSystem.Reset
        self.feed_ok = True  # at least one power path live (set by the rack PDU)
        self.drained = False
        self.cabled = True
        self.coolant_c = DEFAULT_COOLANT_C
        self.injector = FaultInjector(seed, serial, rates)
        self.noise = random.Random(f"{seed}:{serial}:load")
        self.commands = random.Random(f"{seed}:{serial}:commands")
        self.base_util = 0.6 + 0.35 * self.noise.random()
        self.flash_seconds = flash_seconds
        self.flash_failure_rate = flash_failure_rate
        self.burn_in_seconds = burn_in_seconds
        self.tasks: dict[str, Task] = {}
        self.events: list[Fault] = []

    # --- physics -----------------------------------------------------------------------------

    @property
    def powered(self) -> bool:
        return self.switched_on and self.feed_ok

    @property
    def power_w(self) -> float:
        if not self.powered:
            return 0.0
        return self.spec.overhead_w + sum(c.power_w for c in self.chips)

    def apply_fault(self, fault: Fault, now: float) -> None:
        self.events.append(fault)
        chip = self.chips[fault.chip] if fault.chip is not None else None
        if fault.kind == EventKind.CHIP_FAILURE and chip:
            chip.health = HEALTH_FAILED
        elif fault.kind == EventKind.HBM_FAILURE and chip:
            chip.ecc_uncorrected += 1
            chip.health = HEALTH_FAILED
        elif fault.kind == EventKind.ECC_STORM and chip:
            chip.ecc_corrected += 1000 + self.injector.rng.randrange(4000)
            chip.health = max(chip.health, HEALTH_DEGRADED)
        elif fault.kind in (EventKind.LINK_FLAP, EventKind.LINK_DOWN) and chip:
            link = fault.link or 0
            chip.links_down_until[link] = max(chip.links_down_until[link], now + fault.duration_s)
            chip.link_errors += 1 + self.injector.rng.randrange(50)

    def tick(self, now: float, dt: float) -> None:
        for fault in self.injector.server_faults(len(self.chips), self.spec.links_per_chip, dt):
            self.apply_fault(fault, now)
        for chip in self.chips:
            if not self.powered:
                target = 0.0
            elif self.drained:
                target = 0.02
            else:
                target = self.base_util + self.noise.uniform(-0.05, 0.05)
            step_chip(chip, self.spec, target_util=target, coolant_c=self.coolant_c, now=now, dt=dt)
            if not self.powered:
                chip.power_w = 0.0
        for task in self.tasks.values():
            if not task.finished and now >= task.done_at:
                task.finished = True
                if task.ok and task.apply:
                    task.apply()

    # --- commands ----------------------------------------------------------------------------

    def _task(
        self,
        name: str,
        now: float,
        seconds: float,
        ok: bool,
        message: str,
        apply: Callable[[], None] | None = None,
    ) -> Task:
        task = Task(
            f"{self.serial}-{len(self.tasks) + 1}", name, now + seconds, ok, message, apply=apply
        )
        self.tasks[task.id] = task
        return task

    def simple_update(self, image_uri: str, now: float) -> Task:
        """Write the image to the inactive bank and boot it; the old one stays as fallback."""
        version = wire.firmware_version_of(image_uri)
        ok = self.commands.random() >= self.flash_failure_rate
        message = "Update successful" if ok else "Image verification failed; banks unchanged"

        def activate() -> None:
            self.firmware_inactive, self.firmware_active = self.firmware_active, version

        return self._task("SimpleUpdate", now, self.flash_seconds, ok, message, activate)

    def activate_bank(self, version: str) -> bool:
        if not self.firmware_inactive or self.firmware_inactive != version:
            return False
        self.firmware_active, self.firmware_inactive = self.firmware_inactive, self.firmware_active
        return True

    def reset(self, reset_type: str) -> None:
        self.switched_on = reset_type not in ("ForceOff", "GracefulShutdown")

    def burn_in(self, now: float) -> Task:
        failed = [
            {
                BurnInResult.INDEX: c.index,
                BurnInResult.DETAIL: "uncorrectable HBM ECC"
                if c.ecc_uncorrected
                else "chip not responding",
            }
            for c in self.chips
            if c.health == HEALTH_FAILED
        ]
        task = self._task(OemAction.BURN_IN, now, self.burn_in_seconds, True, "Burn-in finished")
        task.result = {BurnInResult.TESTED: len(self.chips), BurnInResult.FAILED_CHIPS: failed}
        return task

    def replace_chip(self, index: int) -> None:
        """A technician swapped the part: a new chip, counters from zero."""
        self.chips[index] = Chip(index, links_down_until=[0.0] * self.spec.links_per_chip)

    def links_down(self, now: float) -> list[dict]:
        return [
            {"chip": c.index, "link": n}
            for c in self.chips
            for n, until in enumerate(c.links_down_until)
            if until > now
        ]

    def state(self) -> dict:
        return {
            HardwareState.FIRMWARE_VERSION: self.firmware_active,
            HardwareState.INACTIVE_FIRMWARE_VERSION: self.firmware_inactive,
            HardwareState.DRAINED: self.drained,
            HardwareState.CABLED: self.cabled,
            HardwareState.POWER_STATE: "On" if self.powered else "Off",
        }


class RackPdu:
    """The rack's power distribution: one feed per path (A/B), each a Redfish RackPDU."""

    def __init__(
        self,
        rack: str,
        feeds: dict[str, float],
        servers: list[Bmc],
        *,
        seed: int,
        rates: FaultRates,
        voltage: float = 415.0,
    ):
        self.rack = rack
        self.serial = wire.pdu_source(rack)
        self.feeds = dict(feeds)  # feed name -> capacity W
        self.servers = servers
        self.voltage = voltage
        self.down_until = dict.fromkeys(feeds, 0.0)
        self.energy_j = dict.fromkeys(feeds, 0.0)
        self.load_w = dict.fromkeys(feeds, 0.0)
        self.injector = FaultInjector(seed, self.serial, rates)
        self.events: list[Fault] = []

    def feed_up(self, feed: str, now: float) -> bool:
        return self.down_until[feed] <= now

    def apply_fault(self, fault: Fault, now: float) -> None:
        self.events.append(fault)
        feed = fault.feed or next(iter(self.feeds))
        self.down_until[feed] = max(self.down_until[feed], now + fault.duration_s)

    def tick(self, now: float, dt: float) -> None:
        for fault in self.injector.pdu_faults(sorted(self.feeds), dt):
            self.apply_fault(fault, now)
        live = [f for f in self.feeds if self.feed_up(f, now)]
        for server in self.servers:
            # 2N: either path carries the rack alone; with both lost the servers go dark.
            server.feed_ok = bool(live)
        total = sum(s.power_w for s in self.servers)
        for feed in self.feeds:
            self.load_w[feed] = total / len(live) if feed in live else 0.0
            self.energy_j[feed] += self.load_w[feed] * dt


class Cdu:
    """The site's coolant distribution unit: the secondary loop's supply temperature."""

    def __init__(
        self,
        name: str,
        servers: list[Bmc],
        *,
        seed: int,
        rates: FaultRates,
        supply_c: float = DEFAULT_COOLANT_C,
    ):
        self.serial = name
        self.servers = servers
        self.nominal_c = supply_c
        self.supply_c = supply_c
        self.excursion_until = 0.0
        self.injector = FaultInjector(seed, name, rates)
        self.events: list[Fault] = []

    def apply_fault(self, fault: Fault, now: float) -> None:
        self.events.append(fault)
        self.excursion_until = max(self.excursion_until, now + fault.duration_s)

    def tick(self, now: float, dt: float) -> None:
        for fault in self.injector.cdu_faults(dt):
            self.apply_fault(fault, now)
        excursion = self.excursion_until > now
        self.supply_c = self.nominal_c + (EXCURSION_RISE_K if excursion else 0.0)
        for server in self.servers:
            server.coolant_c = self.supply_c

    @property
    def heat_w(self) -> float:
        return sum(s.power_w for s in self.servers)


#: Told of every fault a device records, as it happens (the device's event log and
#: EventService listen here), with the site lock held: keep it short.
FaultListener = Callable[[Fault], None]


@dataclass
class Site:
    """Every simulated device of a site, advanced together on one clock."""

    code: str
    bmcs: dict[str, Bmc]
    pdus: dict[str, RackPdu]
    cdus: dict[str, Cdu]
    now: float = 0.0
    lock: threading.RLock = field(default_factory=threading.RLock)
    listeners: list[FaultListener] = field(default_factory=list)

    def _announce(self, device: Bmc | RackPdu | Cdu, before: int) -> None:
        for fault in device.events[before:]:
            for listener in self.listeners:
                listener(fault)

    def advance(self, dt: float) -> None:
        with self.lock:
            self.now += dt
            devices: list[Bmc | RackPdu | Cdu] = [
                *self.cdus.values(),
                *self.pdus.values(),
                *self.bmcs.values(),
            ]
            for device in devices:
                before = len(device.events)
                device.tick(self.now, dt)
                if len(device.events) > before:
                    self._announce(device, before)

    def inject(
        self,
        kind: str,
        target: str,
        *,
        chip: int | None = None,
        link: int | None = None,
        feed: str | None = None,
        duration_s: float = 60.0,
    ) -> Fault:
        """A given fault, now (tests and demos)."""
        fault = Fault(kind, target, chip=chip, link=link, feed=feed, duration_s=duration_s)
        with self.lock:
            device = self.bmcs.get(target) or self.pdus.get(target) or self.cdus.get(target)
            if device is None:
                raise KeyError(target)
            before = len(device.events)
            device.apply_fault(fault, self.now)
            self._announce(device, before)
        return fault


def build_site(
    layout: wire.SiteLayout,
    *,
    seed: int = 1,
    rates: FaultRates | None = None,
    flash_seconds: float = 20.0,
    flash_failure_rate: float = 0.02,
    burn_in_seconds: float = 10.0,
) -> Site:
    """A site from a layout: ``{"site": code, "racks": [{"name", "feeds": {name: watts},
    "servers": [{"serial", "family", "position", "firmware"}]}]}``."""
    rates = rates or FaultRates()
    bmcs: dict[str, Bmc] = {}
    pdus: dict[str, RackPdu] = {}
    for rack in layout["racks"]:
        servers = [
            Bmc(
                s["serial"],
                s["family"],
                seed=seed,
                rates=rates,
                firmware=s.get("firmware") or "2026.09.1",
                rack=rack["name"],
                position=s.get("position", 0),
                flash_seconds=flash_seconds,
                flash_failure_rate=flash_failure_rate,
                burn_in_seconds=burn_in_seconds,
                flavour=FLAVOURS[s.get("flavour") or DEFAULT_FLAVOUR.name],
            )
            for s in rack["servers"]
        ]
        bmcs.update((b.serial, b) for b in servers)
        pdu = RackPdu(
            rack["name"],
            rack.get("feeds") or {f"{rack['name']}-A": 0.0},
            servers,
            seed=seed,
            rates=rates,
        )
        pdus[pdu.serial] = pdu
    cdu = Cdu(f"{layout['site']}-CDU1", list(bmcs.values()), seed=seed, rates=rates)
    return Site(layout["site"], bmcs, pdus, {cdu.serial: cdu})
