"""Per-tenant webhook subscriptions and their deliveries.

A delivery row is written in the same transaction as its event (``services.emit``), so an event
that committed is never without its deliveries: a broker or worker crash only delays them. The
worker leases a due delivery (``leased_until``, ``lease_token``) before calling out; a worker
killed mid-call leaves a lease that expires, and the sweep sends it again. Receivers see at
least once and de-duplicate on the delivery id header; ``delivered_at`` is written once.
Delivery mechanics: ``tenants.events.webhooks``; its pure rules: ``tenants.events.delivery``.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from tenants.events import delivery as rules
from tenants.events.choices import DeliveryState
from tenants.events.destinations import destination_policy
from tenants.events.kinds import EventKind


class WebhookSubscription(models.Model):
    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, related_name="webhook_subscriptions"
    )
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    #: The HMAC-SHA256 key. Kept in the clear because signing needs it; shown once at creation
    #: (and once at each rotation), never in the audit log.
    secret = models.CharField(max_length=128, editable=False)
    secret_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    #: Event kinds to send; empty means every kind.
    kinds = models.JSONField(default=list, blank=True)
    is_active = models.BooleanField(default=True)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=300, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"], name="webhook_name_unique_per_tenant"
            )
        ]

    audit_exclude = frozenset({"secret"})
    #: The audit log keeps ``scheme://host:port/…`` and a fingerprint: a path or query may be a
    #: credential (Slack's, Teams').
    audit_redact = {"url": rules.redacted_url}

    def __str__(self) -> str:
        return self.name

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id

    def wants(self, kind: str) -> bool:
        return not self.kinds or kind in self.kinds

    def clean(self) -> None:
        errors: dict[str, ValidationError] = {}
        if self.url:
            problem = rules.url_problem(self.url, destination_policy())
            if problem:
                errors["url"] = ValidationError(problem[1], code=problem[0])
        kinds = rules.kinds_problem(self.kinds, [k.value for k in EventKind])
        if kinds:
            errors["kinds"] = ValidationError(kinds, code="invalid_kind")
        if self.tenant_id and self.name:
            taken = type(self).objects.filter(tenant_id=self.tenant_id, name=self.name)
            if taken.exclude(pk=self.pk).exists():
                errors["name"] = ValidationError(
                    "the tenant already has a webhook of this name", code="unique"
                )
        if errors:
            raise ValidationError(errors)


class WebhookDelivery(models.Model):
    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey("events.Event", on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(
        max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    leased_until = models.DateTimeField(null=True, blank=True)
    #: Which claim holds the lease: a worker finishing after its lease was taken over records
    #: its attempt but leaves the outcome to the holder.
    lease_token = models.CharField(max_length=32, blank=True, editable=False)
    #: Counted in the subscription's ``consecutive_failures``: it gave up (each delivery once).
    has_failed = models.BooleanField(default=False, editable=False)
    #: ``attempts`` when it was last redelivered: the attempt cap counts from there.
    requeued_after_attempts = models.PositiveIntegerField(default=0, editable=False)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "event"], name="one_delivery_per_event_and_subscription"
            )
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="delivery_due")]

    def __str__(self) -> str:
        return f"delivery {self.pk} of event {self.event_id} to {self.subscription_id}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.subscription.tenant_id


class WebhookAttempt(models.Model):
    """One HTTP call of a delivery: the delivery log with response codes."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="one_attempt_number")
        ]

    def __str__(self) -> str:
        return f"{self.delivery} #{self.number}"
