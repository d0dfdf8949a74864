from __future__ import annotations

from django.db import models

from provisioning.choices import JobOutcome
from tenants.models.audit import AppendOnlyModel


class PartReplacement(AppendOnlyModel):
    """A part swapped during maintenance, with its RMA."""

    workflow = models.ForeignKey(
        "provisioning.Workflow", on_delete=models.PROTECT, related_name="part_replacements"
    )
    ultraserver = models.ForeignKey(
        "inventory.UltraServer", on_delete=models.PROTECT, related_name="part_replacements"
    )
    part = models.CharField(max_length=100)
    removed_serial = models.CharField(max_length=100, blank=True)
    installed_serial = models.CharField(max_length=100, blank=True)
    rma_number = models.CharField(max_length=64, blank=True)
    technician = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.part} on {self.ultraserver_id}"


class Notification(AppendOnlyModel):
    """Something a tenant is told (a drain, a proposed upgrade). Read through the API."""

    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, related_name="notifications"
    )
    site = models.ForeignKey("inventory.Site", null=True, blank=True, on_delete=models.CASCADE)
    workflow = models.ForeignKey(
        "provisioning.Workflow", null=True, blank=True, on_delete=models.CASCADE
    )
    kind = models.CharField(max_length=40)
    message = models.CharField(max_length=1000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.message[:60]

    @property
    def owning_tenant_id(self) -> int:
        return self.tenant_id


class JobRun(models.Model):
    """One run of a scheduled job: when, and how it went."""

    job = models.CharField(max_length=64, db_index=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=8, choices=JobOutcome.choices, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=2000, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["job", "-started_at"], name="jobrun_latest")]

    def __str__(self) -> str:
        return f"{self.job} {self.started_at:%Y-%m-%d %H:%M:%S}"


class SchedulerLease(models.Model):
    """Which Celery beat replica sends the scheduled jobs now (``provisioning.scheduler``):
    one row per role, held by renewing it before it expires. Times are the database's, so
    replicas with skewed clocks agree on when a lease has run out."""

    name = models.CharField(max_length=32, unique=True)
    holder = models.CharField(max_length=200, help_text="host:pid:nonce of the leading replica")
    since = models.DateTimeField(help_text="when this holder took the lease")
    renewed_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        verbose_name = "scheduler lease"

    def __str__(self) -> str:
        return f"{self.name}: {self.holder}"
