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


#: ``resource_type`` of the chained row that closes a tally: "N identical decisions from t1 to
#: t2", ``resource_id`` the first occurrence's id.
REPEATS_RESOURCE = "decision.repeats"


class DecisionRepeat(models.Model):
    """The mutable tally of a chained decision's identical repeats (same tenant, action,
    principal, resource, site, verdict, rules and reasons within ``REPEAT_PERIOD``).

    The chain stays append-only: the first occurrence is a chained ``DecisionRecord``; each
    repeat only counts here; when the outcome changes, the period ends or the sweep runs, a
    chained summary row (``REPEATS_RESOURCE``) puts the final count into the chain and the
    tally is closed (``summary`` set, or ``closed`` with no summary when it never repeated).
    """

    record = models.OneToOneField(
        DecisionRecord, on_delete=models.CASCADE, primary_key=True, related_name="repeats"
    )
    tenant_id = models.BigIntegerField()
    #: Digest of (action, principal, resource type and id, site): what "the same" is about.
    key = models.CharField(max_length=64)
    #: Digest of (verdict, rules, reasons): what "identical" answers.
    outcome = models.CharField(max_length=64)
    count = models.PositiveIntegerField(default=1, help_text="Occurrences, the first included.")
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()
    closed = models.BooleanField(default=False)
    summary = models.OneToOneField(
        DecisionRecord,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="summarises",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant_id", "key"],
                condition=models.Q(closed=False),
                name="decision_repeat_one_open_per_key",
            )
        ]
        indexes = [models.Index(fields=["closed", "first_at"], name="decision_repeat_open")]

    def __str__(self) -> str:
        return f"decision {self.record_id} x{self.count}"
