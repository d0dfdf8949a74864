"""The hardware catalog: chip and UltraServer models, seeded from HARDWARE.md.

Only per-chip figures are stored; every aggregate (PFLOPs, HBM, bandwidth, power of a system) is
derived, so the catalog cannot contradict itself.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models

from factory.catalog.choices import Cooling, Interconnect


class ChipModel(models.Model):
    #: API filters on a relation to this model take an id or this (tenants.filters).
    natural_key_field = "slug"

    name = models.CharField(max_length=64, unique=True)
    slug = models.SlugField(max_length=64, unique=True)
    vendor = models.CharField(max_length=64)
    process = models.CharField(max_length=32, blank=True)
    fp8_dense_pflops = models.DecimalField(max_digits=8, decimal_places=3, null=True, blank=True)
    fp8_sparse_pflops = models.DecimalField(max_digits=8, decimal_places=3, null=True, blank=True)
    hbm_gb = models.DecimalField(
        max_digits=8, decimal_places=3, help_text="HBM capacity, GB (10⁹ bytes)."
    )
    hbm_type = models.CharField(max_length=16, blank=True)
    hbm_tbps = models.DecimalField(max_digits=6, decimal_places=2, help_text="HBM bandwidth, TB/s.")
    nominal_power_w = models.PositiveIntegerField()
    max_power_w = models.PositiveIntegerField()
    cooling = models.CharField(max_length=8, choices=Cooling.choices)
    power_is_estimate = models.BooleanField(default=False)
    source_note = models.TextField(
        blank=True, help_text="Where the figures come from; which are estimates."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class UltraServerModel(models.Model):
    """A rack-scale system: ``chip_count`` chips of one model, plus hosts, switches and fans
    (``overhead_power_w``)."""

    #: API filters on a relation to this model take an id or this (tenants.filters).
    natural_key_field = "slug"

    name = models.CharField(max_length=64, unique=True)
    slug = models.SlugField(max_length=64, unique=True)
    chip_model = models.ForeignKey(
        ChipModel, on_delete=models.PROTECT, related_name="ultraserver_models"
    )
    chip_count = models.PositiveIntegerField()
    interconnect = models.CharField(max_length=24, choices=Interconnect.choices)
    interconnect_note = models.CharField(max_length=200, blank=True)
    rack_units = models.PositiveSmallIntegerField(help_text="Height in rack units (U).")
    chips_per_tray = models.PositiveSmallIntegerField(
        default=4,
        help_text="Accelerator chips per compute tray; chip i sits in tray i // chips_per_tray.",
    )
    overhead_power_w = models.PositiveIntegerField(
        help_text="Power beyond the chips: host CPUs, switches, fans, pumps."
    )
    cooling = models.CharField(max_length=8, choices=Cooling.choices)
    source_note = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "UltraServer model"
        verbose_name_plural = "UltraServer models"

    def __str__(self) -> str:
        return self.name

    # Derived aggregates: never stored.
    @property
    def trays(self) -> int:
        """Compute trays (HARDWARE.md: Trn3 36 × 4, Trn2 16 × 4, GB300 NVL72 18 × 4)."""
        per = self.chips_per_tray or 1
        return -(-self.chip_count // per)

    @property
    def fp8_dense_pflops(self) -> Decimal | None:
        per_chip = self.chip_model.fp8_dense_pflops
        return None if per_chip is None else per_chip * self.chip_count

    @property
    def fp8_sparse_pflops(self) -> Decimal | None:
        per_chip = self.chip_model.fp8_sparse_pflops
        return None if per_chip is None else per_chip * self.chip_count

    @property
    def hbm_tb(self) -> Decimal:
        return self.chip_model.hbm_gb * self.chip_count / 1000

    @property
    def hbm_tbps(self) -> Decimal:
        return self.chip_model.hbm_tbps * self.chip_count

    @property
    def nominal_power_w(self) -> int:
        return self.chip_model.nominal_power_w * self.chip_count + self.overhead_power_w

    @property
    def max_power_w(self) -> int:
        """What placement commits against the rack, feed and site budgets: the peak draw."""
        return self.chip_model.max_power_w * self.chip_count + self.overhead_power_w
