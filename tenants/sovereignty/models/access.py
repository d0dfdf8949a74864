"""The customer lockbox: provider access requests."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


class AccessRequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class AccessRequest(models.Model):
    """The customer lockbox: provider access to a site for a person, for a window, approved (or
    not) by one of the tenant's admins."""

    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.PROTECT, related_name="access_requests"
    )
    site = models.ForeignKey(
        "inventory.Site", on_delete=models.PROTECT, related_name="access_requests"
    )
    person = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="access_requests"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=500)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    status = models.CharField(
        max_length=10, choices=AccessRequestStatus.choices, default=AccessRequestStatus.PENDING
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.person} @ {self.site_id} {self.starts_at:%Y-%m-%d %H:%M}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id

    def clean(self) -> None:
        if self.starts_at and self.ends_at:
            if self.ends_at <= self.starts_at:
                raise ValidationError({"ends_at": "must be after starts_at"}, code="invalid_window")
            if self.ends_at - self.starts_at > timezone.timedelta(days=14):
                raise ValidationError(
                    {"ends_at": "an access window is at most 14 days"}, code="window_too_long"
                )
