from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from factory.wire import FirmwareComponent
from provisioning.choices import WindowStatus


def validate_components(value) -> None:
    """A bundle's ``{component: version}``: components of the wire contract, versions named."""
    if not isinstance(value, dict):
        raise ValidationError("an object of component → version", code="invalid_components")
    known = set(FirmwareComponent)
    for component, version in value.items():
        if component not in known:
            raise ValidationError(
                f"unknown component {component!r}; one of {', '.join(sorted(known))}",
                code="unknown_component",
            )
        if not isinstance(version, str) or not 1 <= len(version) <= 64:
            raise ValidationError(
                f"the version of {component} is 1–64 characters", code="invalid_version"
            )


def validate_weekdays(value) -> None:
    if (
        not isinstance(value, list)
        or not value
        or any(not isinstance(d, int) or isinstance(d, bool) or not 0 <= d <= 6 for d in value)
        or len(set(value)) != len(value)
    ):
        raise ValidationError(
            "a non-empty list of distinct weekdays, 0 = Monday … 6 = Sunday",
            code="invalid_weekdays",
        )


class MaintenanceWindow(models.Model):
    """When disruptive work may happen at a site: recurring, in the site's own time zone.
    The provider proposes; it counts only once a tenant-admin of the site's tenant approved."""

    site = models.ForeignKey(
        "inventory.Site", on_delete=models.PROTECT, related_name="maintenance_windows"
    )
    name = models.CharField(max_length=100)
    weekdays = models.JSONField(validators=[validate_weekdays], help_text="0 = Monday … 6 = Sunday")
    start_time = models.TimeField(help_text="Local time at the site.")
    duration_minutes = models.PositiveIntegerField(
        validators=[MinValueValidator(15), MaxValueValidator(1440)]
    )
    status = models.CharField(
        max_length=10, choices=WindowStatus.choices, default=WindowStatus.PROPOSED
    )
    proposed_by = models.CharField(max_length=150, blank=True)
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["site_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["site", "name"], name="window_name_unique_per_site")
        ]

    def __str__(self) -> str:
        return f"{self.site_id}: {self.name}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.site.tenant_id


class CapacityFloor(models.Model):
    """The tenant's disruption budget at a site: no workflow that takes servers out (a
    maintain when it is created, a rolling upgrade at each batch start) may take the number of
    its in-service UltraServers there below this (``provisioning.budgets``, under the site
    lock)."""

    site = models.OneToOneField(
        "inventory.Site", on_delete=models.CASCADE, related_name="capacity_floor"
    )
    min_in_service = models.PositiveIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["site_id"]

    def __str__(self) -> str:
        return f"{self.site_id} ≥ {self.min_in_service}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.site.tenant_id


class FirmwareRelease(models.Model):
    """A firmware build for a model of UltraServer. The baseline is what every server of that
    model should run; the compliance scan proposes upgrades for the rest."""

    model = models.ForeignKey(
        "catalog.UltraServerModel", on_delete=models.PROTECT, related_name="firmware_releases"
    )
    version = models.CharField(max_length=64)
    origin = models.CharField(max_length=200, help_text="Where the image comes from.")
    # Provenance (tenants.sovereignty.core.signing): the image's digest and a detached Ed25519
    # signature over model, version, origin and digest, by the key ``key_id`` names. A release
    # without them is unsigned; only a trust root's key makes a signature count.
    sha256 = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of the image, lower-case hex."
    )
    signature = models.CharField(
        max_length=100, blank=True, help_text="Detached Ed25519 signature, base64."
    )
    key_id = models.CharField(
        max_length=16, blank=True, help_text="The signing key's id (a trust root's key_id)."
    )
    baseline = models.BooleanField(default=False)
    components = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_components],
        help_text="The bundle's version of each component it carries ({component: version}); "
        "an upgrade's verification reads each back from the BMC's firmware inventory.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model_id", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="release_version_unique"),
            models.UniqueConstraint(
                fields=["model"], condition=Q(baseline=True), name="one_baseline_per_model"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} {self.version}"

    @property
    def owning_tenant_id(self) -> None:
        return None

    @property
    def model_slug(self) -> str:
        """The model as the signature names it (``core.signing.message``)."""
        return self.model.slug

    def clean(self) -> None:
        """The provenance fields are well-formed, and all given or none (an unsigned release).
        Whether the signature is good is the sovereignty check's question, not the form's."""
        from tenants.sovereignty.core import signing

        def invalid(field: str, message: str, code: str) -> ValidationError:
            return ValidationError({field: ValidationError(message, code=code)})

        if self.sha256 and not signing.SHA256_HEX.match(self.sha256):
            raise invalid("sha256", "64 lower-case hex digits", "invalid_digest")
        if self.key_id and not signing.KEY_ID.match(self.key_id):
            raise invalid("key_id", "16 lower-case hex digits", "invalid_key_id")
        if self.signature:
            try:
                signing.parse_signature(self.signature)
            except ValueError as exc:
                raise invalid("signature", str(exc), "invalid_signature") from None
        provenance = {"sha256": self.sha256, "signature": self.signature, "key_id": self.key_id}
        missing = [name for name, value in provenance.items() if not value]
        if (self.signature or self.key_id) and missing:
            raise invalid(
                missing[0],
                "a signed release names its digest, signature and key_id",
                "incomplete_signature",
            )
        if "\n" in self.version or "\n" in self.origin:
            raise invalid("origin", "one line", "invalid_origin")
