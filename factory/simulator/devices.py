"""The simulated devices of one site and their state over simulated time.

A site advances in fixed ticks (``Site.advance``), so a seed fixes every fault; commands from
the agent (firmware updates, resets, burn-in, drain) change state between ticks and finish on
the simulated clock, like the real thing that takes minutes.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from factory import wire
from factory.simulator.faults import Fault, FaultInjector, FaultRates
from factory.simulator.flavours import DEFAULT as DEFAULT_FLAVOUR
from factory.simulator.flavours import FLAVOURS, Flavour
from factory.simulator.hardware import (
    COMPONENT_FIRMWARE,
    HEALTH_DEGRADED,
    HEALTH_FAILED,
    SPECS,
    Chip,
    SystemSpec,
    step_chip,
)
from factory.wire import BurnInResult, EventKind, FirmwareComponent, HardwareState, OemAction

DEFAULT_COOLANT_C = 30.0
EXCURSION_RISE_K = 18.0


def _wall_clock() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Task:
    """A Redfish Task: long operations answer 202 with a task monitor, which is polled."""

    id: str
    name: str
    done_at: float
    ok: bool
    message: str
    result: dict = field(default_factory=dict)
    apply: Callable[[], None] | None = None  # run once when the task completes successfully
    finished: bool = False
    #: Whether DELETE on its task monitor may stop it (a flash half written may not).
    cancellable: bool = False
    cancelled: bool = False
    begun_s: float = 0.0  # the site's clock when it began (for PercentComplete)
    started_at: str = field(default_factory=_wall_clock)  # the Task's StartTime
    ended_at: str = ""  # its EndTime: stamped when ``finished`` first turns true

    def __setattr__(self, name: str, value: object) -> None:
        # Whoever finishes the task (the BMC's tick, a cancel), EndTime is when it happened.
        if name == "finished" and value and not getattr(self, "finished", False):
            object.__setattr__(self, "ended_at", _wall_clock())
        object.__setattr__(self, name, value)

    def cancel(self) -> bool:
        """Stop a running task that allows it; it then never applies its change."""
        if self.finished or not self.cancellable:
            return False
        self.ok, self.cancelled, self.finished = False, True, True
        return True


class Bmc:
    """The BMC of one UltraServer: its chips and trays, A/B system firmware banks and the
    other parts' firmware, power, leaks and drain state."""

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
        components: Mapping[str, str] | None = None,
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
        #: ``{component: sha256 of the image last flashed to it}`` ("" when fetched by URI):
        #: what a test reads to know which bytes the BMC was given.
        self.image_digests: dict[str, str] = {}
        #: Every other FirmwareComponent's running version (the BIOS is the banks above); a
        #: system without switch trays has no switch-tray firmware.
        self.component_firmware: dict[str, str] = {
            c: v
            for c, v in {**COMPONENT_FIRMWARE, **(components or {})}.items()
            if c != FirmwareComponent.BIOS
            and (c != FirmwareComponent.SWITCH_TRAY or self.spec.switch_trays)
        }
        self.leaks: set[int] = set()  # accelerator trays whose leak detector reads Critical
        self.trays_off: set[int] = set()  # trays powered off on their own (Chassis.Reset)
        self.energy_j = 0.0
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
        # Out of range raises IndexError before anything is recorded.
        chip = self.chips[fault.chip] if fault.chip is not None else None
        tray = self.leak_tray(fault) if fault.kind == EventKind.LEAK else None
        self.events.append(fault)
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
        elif tray is not None:
            self.leaks.add(tray)

    def leak_tray(self, fault: Fault) -> int:
        """The tray a leak is at: its own ``tray``, else the tray of its ``chip``, else 0."""
        if fault.tray is not None:
            tray = fault.tray
        elif fault.chip is not None:
            tray = self.spec.tray_of(fault.chip)
        else:
            tray = 0
        if not 0 <= tray < self.spec.trays:
            raise IndexError(f"no tray {tray}")
        return tray

    def clear_leak(self, tray: int | None = None) -> None:
        """A technician fixed the leak (one tray's, or every one): the detector reads OK."""
        if tray is None:
            self.leaks.clear()
        else:
            self.leaks.discard(tray)

    def tray_chips(self, tray: int) -> list[Chip]:
        per = self.spec.chips_per_tray
        return self.chips[tray * per : (tray + 1) * per]

    def tray_powered(self, tray: int) -> bool:
        return self.powered and tray not in self.trays_off

    def set_tray_power(self, tray: int, on: bool) -> None:
        if not 0 <= tray < self.spec.trays:
            raise IndexError(f"no tray {tray}")
        (self.trays_off.discard if on else self.trays_off.add)(tray)

    def tick(self, now: float, dt: float) -> None:
        for fault in self.injector.server_faults(
            len(self.chips), self.spec.links_per_chip, dt, trays=self.spec.trays
        ):
            self.apply_fault(fault, now)
        for chip in self.chips:
            powered = self.tray_powered(self.spec.tray_of(chip.index))
            if not powered:
                target = 0.0
            elif self.drained:
                target = 0.02
            else:
                target = self.base_util + self.noise.uniform(-0.05, 0.05)
            step_chip(chip, self.spec, target_util=target, coolant_c=self.coolant_c, now=now, dt=dt)
            if not powered:
                chip.power_w = 0.0
        self.energy_j += self.power_w * dt
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

    def simple_update(
        self,
        image_uri: str,
        now: float,
        components: Iterable[str] = (FirmwareComponent.BIOS,),
        sha256: str = "",
    ) -> Task:
        """Flash the image to ``components``: the system firmware (BIOS) goes to the inactive
        bank and boots, the old one stays as fallback; any other part runs the new version.
        ``sha256``: the digest of the bytes pushed (a multipart push); a fetch by URI has none."""
        version = wire.firmware_version_of(image_uri)
        targets = list(dict.fromkeys(components))
        ok = self.commands.random() >= self.flash_failure_rate
        message = "Update successful" if ok else "Image verification failed; banks unchanged"

        def activate() -> None:
            for component in targets:
                self.image_digests[component] = sha256
                if component == FirmwareComponent.BIOS:
                    self.firmware_inactive, self.firmware_active = self.firmware_active, version
                else:
                    self.component_firmware[component] = version

        return self._task("SimpleUpdate", now, self.flash_seconds, ok, message, activate)

    def activate_bank(self, version: str) -> bool:
        if not self.firmware_inactive or self.firmware_inactive != version:
            return False
        self.firmware_active, self.firmware_inactive = self.firmware_inactive, self.firmware_active
        return True

    def firmware_inventory(self) -> dict[str, str]:
        """``{FirmwareComponent: running version}`` (``HardwareState.FIRMWARE_INVENTORY``)."""
        return {FirmwareComponent.BIOS: self.firmware_active, **self.component_firmware}

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


#: Three-phase distribution (HARDWARE.md's 415 V feeds): ``RackPdu.voltage`` is line to line,
#: each phase sits at that over sqrt(3) to neutral. Current follows real power through this
#: power factor (server power shelves correct to about 0.99).
POWER_FACTOR = 0.99
MAINS_HZ = 50.0
PHASES = ("Line1", "Line2", "Line3")
#: Beyond one three-phase bus tap per server, a rack PDU has single-phase utility outlets
#: (IEC C19: the top-of-rack switch, a technician's tools), two to a branch like the taps.
SPARE_OUTLETS = 2
OUTLETS_PER_BRANCH = 2
PHASE_IMBALANCE = 0.02  # each phase's share of a tap's load varies by up to this (estimate)
VOLTAGE_NOISE = 0.005  # phase voltage wander, as a fraction of nominal (estimate)
OUTLET_CYCLE_S = 5.0  # Outlet.PowerControl PowerCycle: off this long, then on


@dataclass
class Outlet:
    """One outlet of a rack PDU: a three-phase bus tap feeding one server's power shelf, or a
    single-phase spare (on ``phase``). The same layout repeats on every feed of the rack."""

    id: str
    branch: str
    server: Bmc | None = None
    phase: int = 0  # a single-phase outlet's line (index into PHASES)
    switched_on: bool = True
    on_at: float | None = None  # when a PowerCycle switches it back on
    power_w: float = 0.0
    phase_w: tuple[float, float, float] = (0.0, 0.0, 0.0)
    energy_j: float = 0.0
    imbalance: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def polyphase(self) -> bool:
        return self.server is not None


class RackPdu:
    """The rack's power distribution: one feed per path (A/B), each a Redfish RackPDU with the
    same outlets (2N: every server has a tap on each feed, and either feed carries it alone)."""

    def __init__(
        self,
        rack: str,
        feeds: dict[str, float],
        servers: list[Bmc],
        *,
        seed: int,
        rates: FaultRates,
        voltage: float = 415.0,
        flavour: Flavour = DEFAULT_FLAVOUR,
    ):
        self.rack = rack
        self.serial = wire.pdu_source(rack)
        self.flavour = flavour
        self.feeds = dict(feeds)  # feed name -> capacity W
        self.servers = servers
        self.voltage = voltage
        self.down_until = dict.fromkeys(feeds, 0.0)
        self.energy_j = dict.fromkeys(feeds, 0.0)
        self.load_w = dict.fromkeys(feeds, 0.0)
        self.phase_v = {feed: (0.0, 0.0, 0.0) for feed in feeds}  # line to neutral
        self.frequency_hz = dict.fromkeys(feeds, MAINS_HZ)
        self.outlets = {feed: self._layout() for feed in feeds}
        self.injector = FaultInjector(seed, self.serial, rates)
        self.noise = random.Random(f"{seed}:{self.serial}:phases")
        self.events: list[Fault] = []
        self._distribute(0.0)

    def _layout(self) -> list[Outlet]:
        """A tap per server, then the spares; ``OUTLETS_PER_BRANCH`` to a branch (A, B, ...),
        named like DMTF's PDU mockup (outlet A1 on branch A)."""
        outlets: list[Outlet] = []
        for i, server in enumerate([*self.servers, *[None] * SPARE_OUTLETS]):
            branch = chr(ord("A") + i // OUTLETS_PER_BRANCH)
            outlets.append(
                Outlet(f"{branch}{i % OUTLETS_PER_BRANCH + 1}", branch, server, phase=i % 3)
            )
        return outlets

    @property
    def line_to_neutral_v(self) -> float:
        return self.voltage / 3**0.5

    def feed_up(self, feed: str, now: float) -> bool:
        return self.down_until[feed] <= now

    def outlet(self, feed: str, outlet_id: str) -> Outlet:
        for outlet in self.outlets[feed]:
            if outlet.id == outlet_id:
                return outlet
        raise KeyError(outlet_id)

    def branch_outlets(self, feed: str, branch: str) -> list[Outlet]:
        return [o for o in self.outlets[feed] if o.branch == branch]

    def branches(self) -> list[str]:
        return sorted({o.branch for o in next(iter(self.outlets.values()))})

    def outlet_live(self, feed: str, outlet: Outlet, now: float) -> bool:
        return outlet.switched_on and self.feed_up(feed, now)

    def power_control(self, feed: str, outlet_id: str, state: str, now: float) -> None:
        """Outlet.PowerControl: switch an outlet On, Off or PowerCycle (off now, on after
        ``OUTLET_CYCLE_S``). The load moves at once: to the server's other feed, or off."""
        outlet = self.outlet(feed, outlet_id)
        if state not in ("On", "Off", "PowerCycle"):
            raise ValueError(f"PowerState {state!r} is not On, Off or PowerCycle")
        outlet.switched_on = state == "On"
        outlet.on_at = now + OUTLET_CYCLE_S if state == "PowerCycle" else None
        self._distribute(now)

    def amps(self, feed: str, watts: float, phase: int) -> float:
        volts = self.phase_v[feed][phase]
        return watts / (volts * POWER_FACTOR) if volts > 0 else 0.0

    def phase_amps(self, feed: str, phase_w: tuple[float, float, float]) -> list[float]:
        return [self.amps(feed, w, i) for i, w in enumerate(phase_w)]

    def mains_phase_w(self, feed: str) -> tuple[float, float, float]:
        """Each phase's load at the feed's mains: the sum over its outlets."""
        lines = [0.0, 0.0, 0.0]
        for outlet in self.outlets[feed]:
            for i, w in enumerate(outlet.phase_w):
                lines[i] += w
        return lines[0], lines[1], lines[2]

    @staticmethod
    def neutral_amps(lines: list[float]) -> float:
        """The neutral carries the phasor sum of three currents 120° apart."""
        a, b, c = lines
        return max(0.0, a * a + b * b + c * c - a * b - b * c - c * a) ** 0.5

    def apply_fault(self, fault: Fault, now: float) -> None:
        self.events.append(fault)
        feed = fault.feed or next(iter(self.feeds))
        self.down_until[feed] = max(self.down_until[feed], now + fault.duration_s)
        self._distribute(now)

    def _distribute(self, now: float) -> None:
        """Who draws what: a server's load splits evenly over its live taps (feed up, outlet
        on); with none it goes dark. Each tap splits its share over the three phases."""
        for feed in self.feeds:
            v = self.line_to_neutral_v if self.feed_up(feed, now) else 0.0
            if v and not any(self.phase_v[feed]):
                self.phase_v[feed] = (v, v, v)
            elif not v:
                self.phase_v[feed] = (0.0, 0.0, 0.0)
        for index, server in enumerate(self.servers):
            live = [f for f in self.feeds if self.outlet_live(f, self.outlets[f][index], now)]
            server.feed_ok = bool(live)
            share = server.power_w / len(live) if live else 0.0
            for feed in self.feeds:
                outlet = self.outlets[feed][index]
                outlet.power_w = share if feed in live else 0.0
                weights = outlet.imbalance
                total = sum(weights)
                w0, w1, w2 = (outlet.power_w * w / total for w in weights)
                outlet.phase_w = (w0, w1, w2)
        for feed in self.feeds:
            self.load_w[feed] = sum(o.power_w for o in self.outlets[feed])

    def tick(self, now: float, dt: float) -> None:
        for fault in self.injector.pdu_faults(sorted(self.feeds), dt):
            self.apply_fault(fault, now)
        for feed in self.feeds:
            for outlet in self.outlets[feed]:
                if outlet.on_at is not None and outlet.on_at <= now:
                    outlet.switched_on, outlet.on_at = True, None
                if outlet.polyphase:
                    outlet.imbalance = (
                        1 + self.noise.uniform(-PHASE_IMBALANCE, PHASE_IMBALANCE),
                        1 + self.noise.uniform(-PHASE_IMBALANCE, PHASE_IMBALANCE),
                        1 + self.noise.uniform(-PHASE_IMBALANCE, PHASE_IMBALANCE),
                    )
            v = self.line_to_neutral_v if self.feed_up(feed, now) else 0.0
            self.phase_v[feed] = (
                v * (1 + self.noise.uniform(-VOLTAGE_NOISE, VOLTAGE_NOISE)),
                v * (1 + self.noise.uniform(-VOLTAGE_NOISE, VOLTAGE_NOISE)),
                v * (1 + self.noise.uniform(-VOLTAGE_NOISE, VOLTAGE_NOISE)),
            )
            self.frequency_hz[feed] = MAINS_HZ + self.noise.uniform(-0.02, 0.02) if v else 0.0
        self._distribute(now)
        for feed in self.feeds:
            for outlet in self.outlets[feed]:
                outlet.energy_j += outlet.power_w * dt
            self.energy_j[feed] += self.load_w[feed] * dt


#: The secondary loop's coolant: PG25, 25 % propylene glycol in water, near 35 °C. Approximate
#: figures from the ASHRAE Handbook's glycol tables: specific heat 3.93 kJ/(kg·K), density
#: 1020 kg/m³. The primary side is facility water: 4.18 kJ/(kg·K), 995 kg/m³.
COOLANT_SPECIFIC_HEAT_KJ = 3.93
COOLANT_DENSITY_KG_M3 = 1020.0
WATER_SPECIFIC_HEAT_KJ = 4.18
WATER_DENSITY_KG_M3 = 995.0
#: The pumps hold a constant flow sized so the servers' rated heat warms the coolant by this
#: much (liquid cooling is designed for a 10 K rise); the facility side for 8 K.
DESIGN_RISE_K = 10.0
PRIMARY_DESIGN_RISE_K = 8.0
PRIMARY_SUPPLY_C = 24.0  # facility water into the heat exchanger (estimate)
DESIGN_DELTA_PRESSURE_KPA = 150.0  # across the secondary loop at design flow (estimate)
MIN_FLOW_LPM = 50.0  # the pumps' floor
PUMPS = 2
PUMP_SPEED_PERCENT = 70.0
#: The CDU's own leak detectors (a tray's manifolds are its BMC's): id, type, where.
CDU_LEAK_DETECTORS = (
    ("DripTray", "FloatSwitch", "Drip tray under the heat exchanger"),
    ("PumpTray", "Moisture", "Pump bay floor"),
    ("Reservoir", "Moisture", "Reservoir base"),
)
#: An injected leak names no detector: it is found where any leak in the cabinet collects.
DEFAULT_LEAK_DETECTOR = "DripTray"


def _flow_lpm(heat_w: float, rise_k: float, specific_heat_kj: float, density: float) -> float:
    """Volume flow (L/min) that carries ``heat_w`` with a rise of ``rise_k``."""
    kg_per_s = heat_w / (specific_heat_kj * 1000 * rise_k)
    return kg_per_s / density * 1000 * 60


def _rise_k(heat_w: float, flow_lpm: float, specific_heat_kj: float, density: float) -> float:
    """Temperature rise of ``flow_lpm`` carrying ``heat_w``: Q = m·c_p·ΔT."""
    kg_per_s = flow_lpm / 60 / 1000 * density
    return heat_w / (kg_per_s * specific_heat_kj * 1000) if kg_per_s > 0 else 0.0


class Cdu:
    """The site's coolant distribution unit: a heat exchanger between the facility's water
    (primary) and the servers' loop (secondary), which it supplies at ``supply_c``. The servers'
    heat comes back in the return: supply + heat / (flow × c_p)."""

    def __init__(
        self,
        name: str,
        servers: list[Bmc],
        *,
        seed: int,
        rates: FaultRates,
        supply_c: float = DEFAULT_COOLANT_C,
        flavour: Flavour = DEFAULT_FLAVOUR,
    ):
        self.serial = name
        self.flavour = flavour
        self.servers = servers
        self.nominal_c = supply_c
        self.supply_c = supply_c
        self.excursion_until = 0.0
        rated = sum(s.spec.overhead_w + s.spec.chips * s.spec.chip_nominal_w for s in servers)
        self.flow_lpm = max(
            MIN_FLOW_LPM,
            _flow_lpm(rated, DESIGN_RISE_K, COOLANT_SPECIFIC_HEAT_KJ, COOLANT_DENSITY_KG_M3),
        )
        self.primary_flow_lpm = max(
            MIN_FLOW_LPM,
            _flow_lpm(rated, PRIMARY_DESIGN_RISE_K, WATER_SPECIFIC_HEAT_KJ, WATER_DENSITY_KG_M3),
        )
        self.leak_until = {d[0]: 0.0 for d in CDU_LEAK_DETECTORS}
        self._leak_at: dict[int, str] = {}  # id(fault) -> detector, for origin_of
        self.injector = FaultInjector(seed, name, rates)
        self.noise = random.Random(f"{seed}:{name}:leaks")
        self.events: list[Fault] = []

    def apply_fault(self, fault: Fault, now: float, *, detector: str | None = None) -> None:
        """A coolant excursion warms the supply for its duration; a leak wets one detector
        (``detector``, else the drip tray) for its duration, or until repaired when 0."""
        self.events.append(fault)
        if fault.kind == EventKind.LEAK:
            where = detector or DEFAULT_LEAK_DETECTOR
            until = now + fault.duration_s if fault.duration_s > 0 else float("inf")
            self.leak_until[where] = max(self.leak_until[where], until)
            self._leak_at[id(fault)] = where
        elif fault.kind == EventKind.COOLANT_EXCURSION:
            self.excursion_until = max(self.excursion_until, now + fault.duration_s)

    def detector_of(self, fault: Fault) -> str | None:
        """The leak detector a recorded leak wetted."""
        return self._leak_at.get(id(fault))

    def leaking(self, detector: str, now: float) -> bool:
        return self.leak_until[detector] > now

    def leaks(self, now: float) -> list[str]:
        return [d for d, until in self.leak_until.items() if until > now]

    def repair_leaks(self) -> None:
        self.leak_until = dict.fromkeys(self.leak_until, 0.0)

    def tick(self, now: float, dt: float) -> None:
        for fault in self.injector.cdu_faults(dt):
            detector = None
            if fault.kind == EventKind.LEAK:
                detector = self.noise.choice(CDU_LEAK_DETECTORS)[0]
            self.apply_fault(fault, now, detector=detector)
        excursion = self.excursion_until > now
        self.supply_c = self.nominal_c + (EXCURSION_RISE_K if excursion else 0.0)
        for server in self.servers:
            server.coolant_c = self.supply_c

    @property
    def excursion(self) -> bool:
        return self.supply_c > self.nominal_c + 5

    @property
    def heat_w(self) -> float:
        return sum(s.power_w for s in self.servers)

    @property
    def return_c(self) -> float:
        rise = _rise_k(self.heat_w, self.flow_lpm, COOLANT_SPECIFIC_HEAT_KJ, COOLANT_DENSITY_KG_M3)
        return self.supply_c + rise

    @property
    def primary_supply_c(self) -> float:
        """Facility water; an excursion is the facility side failing to cool (the heat
        exchanger then cannot hold the secondary setpoint)."""
        return PRIMARY_SUPPLY_C + (self.supply_c - self.nominal_c)

    @property
    def primary_return_c(self) -> float:
        flow = self.primary_flow_lpm
        rise = _rise_k(self.heat_w, flow, WATER_SPECIFIC_HEAT_KJ, WATER_DENSITY_KG_M3)
        return self.primary_supply_c + rise

    @property
    def delta_pressure_kpa(self) -> float:
        return DESIGN_DELTA_PRESSURE_KPA


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
        tray: int | None = None,
    ) -> Fault:
        """A given fault, now (tests and demos); ``tray`` places a BMC's leak (else the tray
        of ``chip``)."""
        fault = Fault(
            kind, target, chip=chip, link=link, feed=feed, duration_s=duration_s, tray=tray
        )
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
    """A site from a layout: ``{"site": code, "flavour"?, "racks": [{"name", "feeds":
    {name: watts}, "servers": [{"serial", "family", "position", "firmware", "flavour"?,
    "firmware_components"?}]}]}``; the site's flavour is its PDUs' and CDU's."""
    rates = rates or FaultRates()
    facility = FLAVOURS[layout.get("flavour") or DEFAULT_FLAVOUR.name]
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
                components=s.get("firmware_components"),
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
            flavour=facility,
        )
        pdus[pdu.serial] = pdu
    cdu = Cdu(
        f"{layout['site']}-CDU1", list(bmcs.values()), seed=seed, rates=rates, flavour=facility
    )
    return Site(layout["site"], bmcs, pdus, {cdu.serial: cdu})
