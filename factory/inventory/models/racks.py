from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from factory.catalog.choices import Cooling
from factory.inventory.choices import RackStatus
from factory.inventory.models.locking import lock_capacity_scope
from factory.inventory.power import shrink_shortfall


class Rack(models.Model):
    #: API filters on a relation to this model take an id or this (tenants.filters).
    natural_key_field = "name"

    site = models.ForeignKey("inventory.Site", on_delete=models.PROTECT, related_name="racks")
    name = models.CharField(max_length=64, help_text="e.g. FRA1-R03")
    u_height = models.PositiveSmallIntegerField(
        default=48, validators=[MinValueValidator(1), MaxValueValidator(60)]
    )
    status = models.CharField(max_length=16, choices=RackStatus.choices, default=RackStatus.ACTIVE)
    cooling_type = models.CharField(max_length=8, choices=Cooling.choices)
    cooling_capacity_kw = models.DecimalField(
        max_digits=8,
        decimal_places=1,
        validators=[MinValueValidator(0)],
        help_text="Heat the rack's cooling (CDU loop or air) can remove, kW.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["site__code", "name"]
        constraints = [
            models.UniqueConstraint(fields=["site", "name"], name="rack_name_unique_in_site"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def owning_tenant_id(self) -> int | None:
        return self.site.tenant_id if self.site_id else None

    def lock_for_change(self) -> None:
        lock_capacity_scope(site_ids=[self.site_id], rack_ids=[self.pk])

    def clean(self) -> None:
        if self.pk is None:
            return
        self.lock_for_change()
        from factory.inventory.models import UltraServer
        from factory.inventory.selectors import committed_watts

        errors: dict[str, ValidationError] = {}
        servers = list(
            UltraServer.objects.filter(rack=self.pk)
            .select_related("model")
            .values_list("position", "model__rack_units")
        )
        stored_site = (
            type(self).objects.filter(pk=self.pk).values_list("site_id", flat=True).first()
        )
        if servers and stored_site is not None and stored_site != self.site_id:
            errors["site"] = ValidationError(
                f"rack {self.name} holds {len(servers)} UltraServers; empty it before moving it "
                "to another site",
                code="rack_not_empty",
            )
        top = max((pos + units - 1 for pos, units in servers), default=0)
        if self.u_height is not None and top > self.u_height:
            errors["u_height"] = ValidationError(
                f"rack {self.name} is occupied up to U{top}; it cannot be {self.u_height}U",
                code="rack_height_below_occupied",
            )
        if self.cooling_capacity_kw is not None:
            problem = shrink_shortfall(
                f"rack {self.name} cooling capacity",
                float(self.cooling_capacity_kw) * 1000,
                committed_watts(rack_id=self.pk),
            )
            if problem:
                errors["cooling_capacity_kw"] = ValidationError(
                    problem, code="rack_cooling_capacity_exceeded"
                )
        if errors:
            raise ValidationError(errors)
