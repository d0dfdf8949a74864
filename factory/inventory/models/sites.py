from __future__ import annotations

import zoneinfo

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django_countries.fields import CountryField

from factory.inventory.choices import SiteStatus
from factory.inventory.models.locking import lock_capacity_scope
from factory.inventory.power import shrink_shortfall


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"'{value}' is not an IANA time zone", code="invalid_time_zone")


class Site(models.Model):
    """A customer's data center hall that hosts an AI factory."""

    #: API filters on a relation to this model take an id or this (tenants.filters).
    natural_key_field = "code"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="sites")
    code = models.CharField(
        max_length=16,
        unique=True,
        validators=[
            RegexValidator(
                r"^[A-Z0-9][A-Z0-9-]{1,15}$", "2–16 capitals, digits or '-'", code="invalid_code"
            )
        ],
        help_text="Short operational name, e.g. FRA1.",
    )
    name = models.CharField(max_length=200)
    country = CountryField(help_text="ISO 3166-1 alpha-2.")
    city = models.CharField(max_length=100, blank=True)
    time_zone = models.CharField(max_length=64, validators=[validate_time_zone])
    contracted_power_kw = models.DecimalField(
        max_digits=10,
        decimal_places=1,
        validators=[MinValueValidator(0)],
        help_text="Power the customer contracted to supply, kW.",
    )
    contracted_cooling_kw = models.DecimalField(
        max_digits=10,
        decimal_places=1,
        validators=[MinValueValidator(0)],
        help_text="Heat the customer contracted to remove, kW.",
    )
    status = models.CharField(max_length=20, choices=SiteStatus.choices, default=SiteStatus.PLANNED)
    air_gapped = models.BooleanField(
        default=False, help_text="No network path out; no remote access (sovereignty facts)."
    )
    accreditations = models.JSONField(
        default=list, blank=True, help_text='Accreditations held, e.g. ["vs-nfd", "bsi-c5"].'
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id

    def lock_for_change(self) -> None:
        lock_capacity_scope(site_ids=[self.pk])

    def clean(self) -> None:
        if self.pk is None:
            return
        self.lock_for_change()
        from factory.inventory.selectors import committed_watts

        errors: dict[str, ValidationError] = {}
        committed = committed_watts(site_id=self.pk)
        for field, what in (("contracted_power_kw", "power"), ("contracted_cooling_kw", "cooling")):
            contracted = getattr(self, field)
            if contracted is None:
                continue
            problem = shrink_shortfall(
                f"site {self.code} contracted {what}", float(contracted) * 1000, committed
            )
            if problem:
                errors[field] = ValidationError(problem, code=f"site_contracted_{what}_exceeded")
        stored_tenant = (
            type(self).objects.filter(pk=self.pk).values_list("tenant_id", flat=True).first()
        )
        if stored_tenant is not None and stored_tenant != self.tenant_id:
            from factory.inventory.models import UltraServer

            allocated = UltraServer.objects.filter(rack__site=self.pk, tenant__isnull=False).count()
            if allocated:
                errors["tenant"] = ValidationError(
                    f"site {self.code} has {allocated} UltraServers allocated to its tenant; "
                    "release them before handing the site to another tenant",
                    code="site_has_allocations",
                )
        if errors:
            raise ValidationError(errors)
