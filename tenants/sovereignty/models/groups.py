"""Jurisdiction groups: named sets of countries that rules name, kept as immutable versions.

A group's row carries its current definition (``version``, ``countries``); every definition it
ever had is a ``JurisdictionGroupVersion``, never changed or deleted. A rule pins the versions
it names when it is activated, so redefining a group changes no active rule until its tenant
re-activates it. Built-in groups change only by a provider data migration or the
``revise_group`` management command (``services.rules.revise_group``), never through the API or
the admin.
"""

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
    version = models.PositiveIntegerField(default=1, help_text="The current definition's version.")

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

    @property
    def builtin(self) -> bool:
        return self.tenant_id is None

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
        if (
            self.tenant_id is not None
            and JurisdictionGroup.objects.filter(tenant__isnull=True, code=self.code).exists()
        ):
            raise ValidationError(
                {"code": f"{self.code!r} is a built-in group's code"}, code="code_is_builtin"
            )


class AppendOnly(Exception):
    """A group version is history: it is never changed or deleted."""


class JurisdictionGroupVersion(models.Model):
    """One definition of a group, as it was from ``created_at``: what rules pin."""

    group = models.ForeignKey(JurisdictionGroup, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    countries = models.JSONField(help_text="ISO 3166-1 alpha-2 codes")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["group_id", "version"]
        constraints = [
            models.UniqueConstraint(fields=["group", "version"], name="group_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.group.code} v{self.version}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AppendOnly("a group version is never changed: create the next version")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnly("a group version is never deleted")

    @property
    def owning_tenant_id(self) -> int | None:
        return self.group.tenant_id
