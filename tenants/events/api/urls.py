from rest_framework.routers import SimpleRouter

from tenants.events.api import views, webhooks

router = SimpleRouter(trailing_slash=True)
# The event log and its watch stream (views.py) and webhooks (webhooks.py) register here.
router.register("events", views.EventViewSet, basename="event")
router.register("webhooks", webhooks.WebhookSubscriptionViewSet, basename="webhook")
router.register("webhook-deliveries", webhooks.WebhookDeliveryViewSet, basename="webhook-delivery")

urlpatterns = [*router.urls]
