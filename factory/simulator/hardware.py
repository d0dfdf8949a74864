"""Hardware figures and the physics of one chip (HARDWARE.md).

Power follows utilization between an idle floor and the chip's nominal power; temperature
follows power through a thermal resistance above the coolant supply; above the throttle limit
the chip caps its own power and counts throttle seconds. Energy integrates power.

An UltraServer is built of trays (HARDWARE.md: Trn3 36 x 4 chips, Trn2 16 x 4, GB300 18 x 4),
switch trays where the interconnect is switched, and one power shelf of rectifier units. Its
cold plates share one coolant loop at a fixed flow, sized for a design rise at full load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from factory.wire import FirmwareComponent, HealthCode, Metric

THROTTLE_AT_C = 85.0
IDLE_FRACTION = 0.25  # idle power as a share of nominal (estimate)
RISE_AT_NOMINAL_K = 40.0  # chip temperature above coolant at nominal power (estimate)

HEALTH_OK, HEALTH_DEGRADED, HEALTH_FAILED = (int(h) for h in HealthCode)
HEALTH_NAMES = {HEALTH_OK: "OK", HEALTH_DEGRADED: "Warning", HEALTH_FAILED: "Critical"}

PSU_RATED_W = 5_500.0  # one power-shelf unit (ORv3 class; estimate)
PSU_EFFICIENCY = 0.96  # AC in to DC out (estimate)
DESIGN_RISE_K = 15.0  # coolant rise at full load, within HARDWARE.md's 10-20 K
WATER_J_PER_L_K = 4_180.0  # heat capacity of the coolant (water), per litre


@dataclass(frozen=True)
class SystemSpec:
    """One UltraServer model as the simulator needs it (mirrors the hardware catalog)."""

    family: str
    chips: int
    chip_nominal_w: float
    chip_max_w: float
    hbm_gb: float
    links_per_chip: int
    processor_type: str  # Redfish ProcessorType
    overhead_w: float
    chips_per_tray: int = 4
    #: Trays of the scale-up switch (0 where chips link directly, as Trn2's 3D torus does).
    switch_trays: int = 0

    @property
    def trays(self) -> int:
        """Accelerator (compute) trays."""
        return self.chips // self.chips_per_tray

    @property
    def capacity_w(self) -> float:
        """The most the UltraServer draws: every chip at its limit plus the rest."""
        return float(self.overhead_w + self.chips * self.chip_max_w)

    @property
    def power_supplies(self) -> int:
        """Units of the power shelf: enough for full load, plus one spare (N+1)."""
        return math.ceil(self.capacity_w / PSU_RATED_W) + 1

    @property
    def coolant_flow_lpm(self) -> float:
        """The loop's flow, sized so full load warms the coolant by ``DESIGN_RISE_K``."""
        return round(self.capacity_w / (WATER_J_PER_L_K * DESIGN_RISE_K) * 60, 1)

    def tray_of(self, chip: int) -> int:
        return chip // self.chips_per_tray


SPECS = {
    # Switch-tray counts: GB300 NVL72 has 9 NVLink switch trays; Trn3's NeuronSwitch-v1 tray
    # count is not published (estimate); Trn2 links its chips in a torus, without switches.
    "trn3": SystemSpec("trn3", 144, 1000, 1200, 144, 4, "Accelerator", 12_000, switch_trays=9),
    "trn2": SystemSpec("trn2", 64, 500, 600, 96, 4, "Accelerator", 6_000),
    "gb300": SystemSpec("gb300", 72, 1200, 1400, 288, 4, "GPU", 10_000, switch_trays=9),
}


#: What a BMC's parts run before anyone flashes them (plausible vendor strings); the system
#: firmware (BIOS) is the layout's ``firmware`` and has two banks.
COMPONENT_FIRMWARE: dict[str, str] = {
    FirmwareComponent.BMC: "2.14.0",
    FirmwareComponent.NIC: "28.41.1002",
    FirmwareComponent.ACCELERATOR_TRAY: "1.9.2",
    FirmwareComponent.SWITCH_TRAY: "3.2.1",
    FirmwareComponent.POWER_SHELF: "1.4.7",
}


def coolant_outlet_c(spec: SystemSpec, inlet_c: float, heat_w: float) -> float:
    """The loop's return temperature: the inlet plus the heat the cold plates took up."""
    litres_per_s = spec.coolant_flow_lpm / 60
    return inlet_c + heat_w / (WATER_J_PER_L_K * litres_per_s) if litres_per_s else inlet_c


@dataclass
class Chip:
    index: int
    health: int = HEALTH_OK
    utilization: float = 0.0
    power_w: float = 0.0
    energy_j: float = 0.0
    temp_c: float = 30.0
    hbm_used_gb: float = 0.0
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    link_errors: int = 0
    link_down_s: float = 0.0
    throttle_s: float = 0.0
    links_down_until: list[float] = field(default_factory=list)  # per link, sim time

    def metrics(self) -> dict[str, float | int]:
        """The chip's per-chip telemetry (``factory.wire.CHIP_METRICS``), as the BMC reports it."""
        return {
            Metric.POWER_W: round(self.power_w, 1),
            Metric.ENERGY_J: round(self.energy_j, 1),
            Metric.TEMP_C: round(self.temp_c, 2),
            Metric.UTILIZATION: round(self.utilization, 4),
            Metric.HBM_USED_GB: round(self.hbm_used_gb, 2),
            Metric.ECC_CORRECTED: self.ecc_corrected,
            Metric.ECC_UNCORRECTED: self.ecc_uncorrected,
            Metric.LINK_ERRORS: self.link_errors,
            Metric.LINK_DOWN_S: round(self.link_down_s, 1),
            Metric.THROTTLE_S: round(self.throttle_s, 1),
            Metric.HEALTH: self.health,
        }


def step_chip(
    chip: Chip, spec: SystemSpec, *, target_util: float, coolant_c: float, now: float, dt: float
) -> None:
    """Advance one chip by ``dt`` seconds of simulated time."""
    if chip.health == HEALTH_FAILED:
        chip.utilization = 0.0
        chip.power_w = 0.0
    else:
        chip.utilization = max(0.0, min(1.0, target_util))
        idle = spec.chip_nominal_w * IDLE_FRACTION
        chip.power_w = idle + (spec.chip_nominal_w - idle) * chip.utilization
    rise_per_w = RISE_AT_NOMINAL_K / spec.chip_nominal_w
    temp = coolant_c + chip.power_w * rise_per_w
    if temp > THROTTLE_AT_C and chip.power_w > 0:
        # The chip caps its power to stay at the limit and counts the time.
        chip.power_w = max(0.0, (THROTTLE_AT_C - coolant_c) / rise_per_w)
        temp = THROTTLE_AT_C
        chip.throttle_s += dt
    chip.temp_c = temp
    chip.energy_j += chip.power_w * dt
    chip.hbm_used_gb = spec.hbm_gb * 0.9 * chip.utilization
    down = sum(1 for until in chip.links_down_until if until > now)
    chip.link_down_s += down * dt
