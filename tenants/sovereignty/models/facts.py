"""Provider-maintained facts the tenant's rules depend on, changed with notice.

A site's country, accreditations and air-gapped flag, and a technician's nationality, residency
and clearance are kept by the provider, the party the rules constrain. A change that would flip
a live decision of a tenant is announced to it and held here until ``effective_at`` (or until
every tenant told has acknowledged it); decisions read the stored facts, so they keep using the
old ones until then.
"""

from __future__ import annotations

from django.db import models


class FactSubject(models.TextChoices):
    SITE = "site", "Site"
    PERSON = "person", "Person"


class FactChangeStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPLIED = "applied", "Applied"


class PendingFactChange(models.Model):
    """A change of provider-maintained facts, announced before it takes effect."""

    subject_type = models.CharField(max_length=8, choices=FactSubject.choices)
    subject_id = models.CharField(max_length=64)
    subject_repr = models.CharField(max_length=200)
    before = models.JSONField(help_text="The facts it changes, as they are now.")
    after = models.JSONField(help_text="The same facts, as they will be.")
    requested_by = models.CharField(max_length=150)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    effective_at = models.DateTimeField()
    status = models.CharField(
        max_length=8, choices=FactChangeStatus.choices, default=FactChangeStatus.PENDING
    )
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["subject_type", "subject_id"],
                condition=models.Q(status="pending"),
                name="one_pending_fact_change_per_subject",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject_type} {self.subject_repr}: {sorted(self.after)}"


class FactChangeNotice(models.Model):
    """One tenant told of a pending change, with the live decisions it would flip for it."""

    change = models.ForeignKey(PendingFactChange, on_delete=models.CASCADE, related_name="notices")
    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.PROTECT, related_name="fact_notices"
    )
    flips = models.JSONField(default=list, help_text='Each {"subject", "id", "name", "becomes"}.')
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-change__created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["change", "tenant"], name="one_notice_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.change} → tenant {self.tenant_id}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id
