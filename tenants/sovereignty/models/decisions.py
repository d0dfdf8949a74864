"""The access-transparency log."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from tenants.models.audit import ChainedModel, chain_constraints


class DecisionRecord(ChainedModel):
    """Access transparency: every sovereignty decision about a tenant's site or asset, allowed or
    denied, with the rules that decided it. Append-only and hash-chained per tenant, like the
    audit log."""

    ledger_log = "decision"
    ledger_lock = 14002

    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    tenant_id = models.BigIntegerField(db_index=True)
    actor_username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=32, db_index=True)
    principal = models.CharField(max_length=150, blank=True, help_text="the person acting, if any")
    resource_type = models.CharField(max_length=32)
    resource_id = models.CharField(max_length=64)
    resource_repr = models.CharField(max_length=200)
    site_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    site_owner_id = models.BigIntegerField(
        null=True,
        blank=True,
        db_index=True,
        help_text="The tenant whose premises the site is: it sees the record, redacted.",
    )
    allowed = models.BooleanField()
    rule_ids = models.JSONField(default=list)
    reasons = models.JSONField(default=list)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = chain_constraints("decision")

    def __str__(self) -> str:
        verdict = "allowed" if self.allowed else "denied"
        return f"{self.action} {self.resource_repr}: {verdict}"

    @property
    def owning_tenant_id(self) -> int:
        return self.tenant_id
