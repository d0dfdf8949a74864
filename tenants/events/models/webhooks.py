"""Per-tenant webhook subscriptions and their deliveries.

A delivery row is written in the same transaction as its event (``services.emit``), so an event
that committed is never without its deliveries: a broker or worker crash only delays them. The
worker leases a due delivery (``leased_until``) before calling out; a worker killed mid-call
leaves a lease that expires, and the sweep sends it again. Receivers see at least once and
de-duplicate on the delivery id header; ``delivered_at`` is written once.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from tenants.events.choices import DeliveryState


class WebhookSubscription(models.Model):
    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.CASCADE, related_name="webhook_subscriptions"
    )
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    #: The HMAC-SHA256 key. Kept in the clear because signing needs it; shown once at creation.
    secret = models.CharField(max_length=128, editable=False)
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

    def __str__(self) -> str:
        return self.name

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id

    def wants(self, kind: str) -> bool:
        return not self.kinds or kind in self.kinds


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
        return f"{self.subscription} ← {self.event}"

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
