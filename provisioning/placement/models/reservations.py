from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from provisioning.placement.choices import ReservationState, TopologyConstraint


class CapacityReservation(models.Model):
    """A tenant's claim on N UltraServers of a model at a site for a time range, shaped like an
    EC2 capacity block (scheduled → active → expired; cancelled; failed with the reason).

    The servers that honour it are chosen when it is made (``ReservedServer``), so it holds
    capacity against other placements from the moment it exists and capacity endpoints count
    it. Its id is the ``CapacityBlockId`` of ``instance-topology/``."""

    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.PROTECT, related_name="capacity_reservations"
    )
    site = models.ForeignKey(
        "inventory.Site", on_delete=models.PROTECT, related_name="capacity_reservations"
    )
    model = models.ForeignKey(
        "catalog.UltraServerModel", on_delete=models.PROTECT, related_name="capacity_reservations"
    )
    name = models.CharField(max_length=100, blank=True)
    count = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(1000)])
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    constraint = models.CharField(
        max_length=16, choices=TopologyConstraint.choices, default=TopologyConstraint.SAME_NODE
    )
    max_hops = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(16)],
        help_text="With constraint max_hops: the largest distance between two members.",
    )
    state = models.CharField(
        max_length=16, choices=ReservationState.choices, default=ReservationState.SCHEDULED
    )
    state_reason = models.CharField(max_length=500, blank=True)
    #: The solver's account of the servers chosen (and of every swap since), as for a unit.
    explanation = models.JSONField(default=dict, blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["starts_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=F("starts_at")),
                name="reservation_ends_after_start",
                violation_error_message="a reservation ends after it starts",
            ),
        ]
        indexes = [models.Index(fields=["site", "state"], name="reservation_site_state")]

    def __str__(self) -> str:
        return self.name or f"cr-{self.pk}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id


class ReservedServer(models.Model):
    """One UltraServer held by a reservation for its time range. The range is copied here so
    overlap is one indexed query (and, on PostgreSQL, could be an exclusion constraint);
    rows of a reservation that stops holding (cancelled, expired, failed) are deleted."""

    reservation = models.ForeignKey(
        CapacityReservation, on_delete=models.CASCADE, related_name="holds"
    )
    ultraserver = models.ForeignKey(
        "inventory.UltraServer", on_delete=models.PROTECT, related_name="reservation_holds"
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()

    class Meta:
        ordering = ["reservation_id", "ultraserver_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["reservation", "ultraserver"], name="reserved_server_once"
            ),
        ]
        indexes = [
            models.Index(fields=["ultraserver", "starts_at", "ends_at"], name="reserved_overlap")
        ]

    def __str__(self) -> str:
        return f"{self.reservation_id}: {self.ultraserver_id}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.reservation.tenant_id
