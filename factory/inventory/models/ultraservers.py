from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from factory.inventory.choices import ChipHealth, LifecycleState
from factory.inventory.models.locking import lock_capacity_scope


class UltraServer(models.Model):
    """A rack-scale system of 64–144 accelerator chips, owned and run by the provider, placed in
    a customer's rack and allocated to that customer."""

    #: API filters on a relation to this model take an id or this (tenants.filters).
    natural_key_field = "serial"

    serial = models.CharField(max_length=64, unique=True)
    model = models.ForeignKey(
        "catalog.UltraServerModel", on_delete=models.PROTECT, related_name="ultraservers"
    )
    rack = models.ForeignKey(
        "inventory.Rack",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="ultraservers",
    )
    position = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Lowest rack unit it occupies (1 = bottom).",
    )
    network_node = models.ForeignKey(
        "inventory.NetworkNode",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="ultraservers",
        help_text="The lowest switch of the site's EFA fabric it hangs under (its leaf).",
    )
    tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="ultraservers",
        help_text="The tenant it is allocated to; empty for a provider spare.",
    )
    lifecycle_state = models.CharField(
        max_length=20, choices=LifecycleState.choices, default=LifecycleState.PLANNED
    )
    firmware_version = models.CharField(max_length=64, blank=True)
    runtime_version = models.CharField(max_length=64, blank=True)
    in_maintenance = models.BooleanField(default=False)
    fault_reason = models.CharField(max_length=500, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    unreachable_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set when the site's agent has gone silent; cleared when it reports again.",
    )
    isolated_since = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Powered off at once by a critical fault (a leak); cleared when the fault is.",
    )
    isolation_reason = models.CharField(max_length=500, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["serial"]
        verbose_name = "UltraServer"
        verbose_name_plural = "UltraServers"
        constraints = [
            models.CheckConstraint(
                condition=Q(rack__isnull=True, position__isnull=True)
                | Q(rack__isnull=False, position__isnull=False),
                name="ultraserver_rack_and_position_together",
                violation_error_message="rack and position are set together",
            ),
        ]

    def __str__(self) -> str:
        return self.serial

    @property
    def owning_tenant_id(self) -> int | None:
        if self.rack_id:
            return self.rack.site.tenant_id
        return self.tenant_id

    def _stored(self) -> dict | None:
        if self.pk is None:
            return None
        return (
            type(self)
            .objects.filter(pk=self.pk)
            .values("model_id", "rack_id", "rack__site_id")
            .first()
        )

    def lock_for_change(self) -> None:
        stored = self._stored() or {}
        site_ids = {stored.get("rack__site_id")}
        if self.rack_id:
            site_ids.add(self.rack.site_id)
        lock_capacity_scope(site_ids=site_ids, rack_ids={self.rack_id, stored.get("rack_id")})

    def clean(self) -> None:
        stored = self._stored()
        if stored and self.model_id and stored["model_id"] != self.model_id:
            raise ValidationError(
                {
                    "model": ValidationError(
                        "the model of an UltraServer cannot change: its chips were built for it",
                        code="model_immutable",
                    )
                }
            )
        if (self.rack_id is None) != (self.position is None):
            field = "position" if self.rack_id else "rack"
            raise ValidationError(
                {
                    field: ValidationError(
                        "rack and position are set together", code="placement_incomplete"
                    )
                }
            )
        if self.rack_id and self.tenant_id and self.rack.site.tenant_id != self.tenant_id:
            raise ValidationError(
                {
                    "tenant": ValidationError(
                        f"rack {self.rack.name} is on {self.rack.site.tenant}'s premises; "
                        "an UltraServer there can only be allocated to that tenant",
                        code="allocation_outside_premises",
                    )
                }
            )
        if self.network_node_id is not None and (
            self.rack_id is None or (stored is not None and stored["rack_id"] != self.rack_id)
        ):
            # Moved to another rack (or unracked): its old leaf is not its switch any more.
            # Detached, not refused: the fabric document attaches it (sites/{id}/fabric/).
            self.network_node = None
        if self.rack_id and self.model_id and self.position:
            self.lock_for_change()
            from factory.inventory.selectors import placement_problems

            problems: dict[str, list[ValidationError]] = {}
            for field, code, message in placement_problems(self):
                problems.setdefault(field, []).append(ValidationError(message, code=code))
            if problems:
                raise ValidationError(problems)


class Chip(models.Model):
    """One accelerator chip of an UltraServer, created with it."""

    ultraserver = models.ForeignKey(UltraServer, on_delete=models.CASCADE, related_name="chips")
    index = models.PositiveSmallIntegerField()
    serial = models.CharField(max_length=80, unique=True)
    health = models.CharField(max_length=10, choices=ChipHealth.choices, default=ChipHealth.OK)
    health_note = models.CharField(max_length=500, blank=True)
    ecc_corrected = models.BigIntegerField(default=0, validators=[MinValueValidator(0)])
    ecc_uncorrected = models.BigIntegerField(default=0, validators=[MinValueValidator(0)])
    link_errors = models.BigIntegerField(default=0, validators=[MinValueValidator(0)])
    updated_at = models.DateTimeField(auto_now=True)

    #: Fixed when the chip is created; read-only in the admin and the API.
    IDENTITY = ("ultraserver", "index", "serial")
    #: Error counters, counted by the hardware; read-only in the admin and the API (people
    #: change a chip's health, nothing else).
    COUNTERS = ("ecc_corrected", "ecc_uncorrected", "link_errors")

    class Meta:
        ordering = ["ultraserver_id", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["ultraserver", "index"], name="chip_index_unique_in_server"
            ),
        ]
        indexes = [
            # The chips that are not well, found without reading the million that are: the
            # health sweep, placement's candidates and the rollout's health gate ask for them.
            models.Index(
                fields=["health", "ultraserver"],
                condition=~models.Q(health="ok"),
                name="chip_unwell",
            ),
        ]

    def __str__(self) -> str:
        return self.serial

    @property
    def owning_tenant_id(self) -> int | None:
        return self.ultraserver.owning_tenant_id


class ChipCounts(models.Model):
    """How many of an UltraServer's chips are in each health state, kept by the database.

    Why: the fleet, site and capacity pages and ``/metrics`` count chips by health on every
    request; at a million chips that read the whole chip table (1.7 s for ``capacity/sites/``).
    These rows are one per server, kept by triggers on ``inventory_chip`` in the transaction of
    the change (every writer: the API, the admin, a queryset ``update()``, raw SQL), as deltas,
    so concurrent changes to one server's chips add up. Nothing in Python writes them; the
    ``recount_chips`` command checks (and with ``--fix`` repairs) them against the chips.

    A separate table, not columns of ``UltraServer``: a server saved from an instance read
    before its chips changed would write its stale counts back.
    """

    ultraserver = models.OneToOneField(
        UltraServer, on_delete=models.CASCADE, primary_key=True, related_name="chip_counts"
    )
    ok = models.IntegerField(default=0)
    degraded = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    unknown = models.IntegerField(default=0)

    #: The health states: a column each, named by ChipHealth's value.
    STATES: tuple[str, ...] = tuple(ChipHealth.values)

    class Meta:
        verbose_name = "chip counts"
        verbose_name_plural = "chip counts"

    def __str__(self) -> str:
        return f"{self.ultraserver_id}: " + ", ".join(
            f"{s} {getattr(self, s)}" for s in self.STATES
        )

    @property
    def total(self) -> int:
        return sum(getattr(self, s) for s in self.STATES)
