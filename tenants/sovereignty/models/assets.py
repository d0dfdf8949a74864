"""What a tenant protects, and the legal bases it holds for transfers."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from tenants.sovereignty.core.model import (
    ASSET_KINDS,
    CLASSIFICATIONS,
    LEGAL_BASES,
)
from tenants.sovereignty.core.rules import RuleError, validate_params
from tenants.sovereignty.models.base import choices_of as _choices


class ProtectedAsset(models.Model):
    """Something of the tenant's that must stay within bounds: a dataset, model weights, a backup
    or replica, an encryption key. ``site`` is where it is now."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="assets")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=_choices(ASSET_KINDS))
    classification = models.CharField(max_length=16, choices=_choices(CLASSIFICATIONS))
    labels = models.JSONField(default=list, blank=True)
    site = models.ForeignKey(
        "inventory.Site", null=True, blank=True, on_delete=models.PROTECT, related_name="assets"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="asset_name_unique_per_tenant"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id

    def clean(self) -> None:
        labels = self.labels
        if not isinstance(labels, list) or not all(isinstance(v, str) and v for v in labels):
            raise ValidationError({"labels": "a list of non-empty strings"}, code="invalid")
        try:
            validate_params("colocation", {"labels": labels})
        except RuleError as error:
            raise ValidationError({"labels": error.message}, code="invalid_label") from None


class TransferBasis(models.Model):
    """A legal basis for transfers to a destination (country or group), on record: an adequacy
    decision, standard contractual clauses or binding corporate rules."""

    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.PROTECT, related_name="transfer_bases"
    )
    kind = models.CharField(max_length=16, choices=_choices(LEGAL_BASES))
    destination = models.CharField(max_length=32, help_text="Country code or group code.")
    reference = models.CharField(max_length=300, help_text="e.g. the decision or contract.")
    valid_until = models.DateField(null=True, blank=True)
    countries = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text="The destination's countries, resolved from the basis owner's groups when the "
        "basis was recorded: what transfers are checked against.",
    )
    group_version = models.PositiveIntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text="The version of the destination group that was pinned (none for a country).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["destination", "kind"]
        verbose_name_plural = "transfer bases"

    def __str__(self) -> str:
        return f"{self.kind} for {self.destination}"

    def pin_destination(self) -> None:
        """Resolve the destination to countries now, from the basis owner's own or built-in
        groups (never the destination site owner's), and pin the group's version: a later
        group revision changes no basis on record until it is recorded again, just as it
        changes no active rule."""
        from django_countries import countries as iso

        from tenants.sovereignty.models.groups import JurisdictionGroup

        code = self.destination
        if len(code) == 2 and code in iso:
            self.countries, self.group_version = [code], None
            return
        group = (
            JurisdictionGroup.objects.filter(code=code, tenant_id=self.tenant_id).first()
            or JurisdictionGroup.objects.filter(code=code, tenant__isnull=True).first()
        )
        if group is None:
            raise ValidationError(
                {"destination": f"{code!r} is neither a country nor a known group"},
                code="unknown_destination",
            )
        self.countries, self.group_version = sorted(group.countries), group.version

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id

    def clean(self) -> None:
        try:
            validate_params("residency", {"allowed": [self.destination]})
        except RuleError as error:
            raise ValidationError({"destination": error.message}, code="invalid_code") from None
        stored = None
        if not self._state.adding and self.pk is not None:
            stored = TransferBasis.objects.filter(pk=self.pk).values("destination", "tenant_id")
        now = {"destination": self.destination, "tenant_id": self.tenant_id}
        if stored is None or stored.first() != now:
            self.pin_destination()
