from django.urls import path
from rest_framework.routers import SimpleRouter

from factory.telemetry.api import views

router = SimpleRouter(trailing_slash=True)
router.register("ultraservers", views.UltraServerTelemetryViewSet, basename="ultraserver-telemetry")
router.register("sites", views.SitePowerViewSet, basename="site-power")

urlpatterns = [
    path("agent/telemetry/", views.AgentTelemetryView.as_view(), name="agent-telemetry"),
    path("agent/events/", views.AgentEventsView.as_view(), name="agent-events"),
    path("agent/config/", views.AgentConfigView.as_view(), name="agent-config"),
    *router.urls,
]
