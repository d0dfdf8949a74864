from tenants.events.models.events import Event
from tenants.events.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookSubscription

__all__ = ["Event", "WebhookAttempt", "WebhookDelivery", "WebhookSubscription"]
