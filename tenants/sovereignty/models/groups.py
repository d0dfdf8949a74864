"""Jurisdiction groups: named sets of countries that rules name."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q


class JurisdictionGroup(models.Model):
    """A named set of countries ("EU", "EEA", or a tenant's own, e.g. "DACH"). Built-in groups
    have no tenant and are visible to everyone."""

    tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="jurisdiction_groups",
    )
    code = models.CharField(max_length=32, help_text="e.g. EU, EEA, DACH")
    name = models.CharField(max_length=200)
    countries = models.JSONField(default=list, help_text="ISO 3166-1 alpha-2 codes")

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "code"], name="group_code_unique_per_tenant"),
            models.UniqueConstraint(
                fields=["code"], condition=Q(tenant__isnull=True), name="group_code_unique_builtin"
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id

    def clean(self) -> None:
        from django_countries import countries

        if not isinstance(self.countries, list) or not self.countries:
            raise ValidationError(
                {"countries": "a non-empty list of country codes"}, code="invalid"
            )
        bad = [c for c in self.countries if not isinstance(c, str) or c not in countries]
        if bad:
            raise ValidationError(
                {"countries": f"not ISO 3166-1 alpha-2: {bad[0]!r}"}, code="invalid_country"
            )
        if not self.code.replace("-", "").isalnum():
            raise ValidationError({"code": "letters, digits and '-' only"}, code="invalid_code")
        if len(self.code) == 2 and self.code.upper() in countries:
            raise ValidationError(
                {"code": "a group code must not be a country code"}, code="code_is_country"
            )
