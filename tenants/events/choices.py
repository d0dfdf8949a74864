from django.db import models

from tenants.events.kinds import EVENT_KIND_LABELS, EventKind

EventKindChoice = models.TextChoices(
    "EventKindChoice", [(k.name, (k.value, EVENT_KIND_LABELS[k])) for k in EventKind]
)


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"
