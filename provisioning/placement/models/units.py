from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from provisioning.placement.choices import (
    MemberRole,
    MemberState,
    ReplacementState,
    Spread,
    TopologyConstraint,
    UnitState,
)


class WorkloadUnit(models.Model):
    """A leader/follower group of UltraServers placed together for one multi-node workload
    (a large model served over EFA), inside a reservation or from free capacity.

    ``explanation`` is the solver's account of the choice (why these members, why each
    excluded server was excluded), kept as it was when the unit was placed. Upgrades and
    maintenance count units as well as servers: at most ``max_unavailable`` of its members out
    at once (its own disruption policy; 0 means take the whole unit in one window)."""

    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.PROTECT, related_name="workload_units"
    )
    site = models.ForeignKey(
        "inventory.Site", on_delete=models.PROTECT, related_name="workload_units"
    )
    reservation = models.ForeignKey(
        "placement.CapacityReservation",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="units",
    )
    name = models.CharField(max_length=100)
    model = models.ForeignKey(
        "catalog.UltraServerModel",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="workload_units",
        help_text="Every member is of this model (EFA peers of one kind); the reservation's "
        "model inside a reservation.",
    )
    size = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(256)]
    )
    constraint = models.CharField(
        max_length=16, choices=TopologyConstraint.choices, default=TopologyConstraint.SAME_NODE
    )
    max_hops = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(16)]
    )
    spread = models.CharField(max_length=8, choices=Spread.choices, default=Spread.NONE)
    #: ProtectedAsset ids the workload reads (model weights, datasets): checked with
    #: ``tenants.sovereignty.check_workload_inputs`` at placement.
    inputs = models.JSONField(default=list, blank=True)
    max_unavailable = models.PositiveSmallIntegerField(
        default=0,
        help_text="Members a rollout may take out at once; 0 = the whole unit in one window.",
    )
    auto_replace = models.BooleanField(
        default=False,
        help_text="Swap a failed member for the proposed replacement without asking the tenant.",
    )
    state = models.CharField(max_length=12, choices=UnitState.choices, default=UnitState.ACTIVE)
    state_reason = models.CharField(max_length=500, blank=True)
    explanation = models.JSONField(default=dict, blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["site_id", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                condition=~Q(state="released"),
                name="unit_name_unique_per_tenant",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id


class UnitMember(models.Model):
    """An UltraServer's membership of a unit. A server is an active member of one unit at a
    time (a partial unique constraint); memberships that ended stay, for history."""

    unit = models.ForeignKey(WorkloadUnit, on_delete=models.CASCADE, related_name="members")
    ultraserver = models.ForeignKey(
        "inventory.UltraServer", on_delete=models.PROTECT, related_name="unit_memberships"
    )
    role = models.CharField(max_length=10, choices=MemberRole.choices)
    state = models.CharField(max_length=10, choices=MemberState.choices, default=MemberState.ACTIVE)
    state_reason = models.CharField(max_length=500, blank=True)
    joined_at = models.DateTimeField(auto_now_add=True)
    left_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["unit_id", "-role", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["ultraserver"],
                condition=Q(state__in=["active", "failed"]),
                name="unit_member_one_unit_at_a_time",
                violation_error_message="this UltraServer is already a member of a unit",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.unit_id}: {self.ultraserver_id} ({self.role})"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.unit.tenant_id


class UnitReplacement(models.Model):
    """A proposed swap of a failed member for a healthy server under the same network node.
    A maintain workflow carries it out when the tenant accepts it or the unit's policy
    allows it without asking."""

    unit = models.ForeignKey(WorkloadUnit, on_delete=models.CASCADE, related_name="replacements")
    failed_member = models.ForeignKey(
        UnitMember, on_delete=models.CASCADE, related_name="replacements"
    )
    replacement = models.ForeignKey(
        "inventory.UltraServer",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="proposed_replacements",
    )
    state = models.CharField(
        max_length=10, choices=ReplacementState.choices, default=ReplacementState.PROPOSED
    )
    explanation = models.JSONField(default=dict, blank=True)
    workflow_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "id"]

    def __str__(self) -> str:
        return f"{self.unit_id}: replace {self.failed_member_id}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.unit.tenant_id
