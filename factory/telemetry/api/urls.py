from django.urls import path
from rest_framework.routers import SimpleRouter

from factory import wire
from factory.telemetry.api import views

router = SimpleRouter(trailing_slash=True)
router.register("ultraservers", views.UltraServerTelemetryViewSet, basename="ultraserver-telemetry")
router.register("sites", views.SitePowerViewSet, basename="site-power")

urlpatterns = [
    path(wire.TELEMETRY_PATH, views.AgentTelemetryView.as_view(), name="agent-telemetry"),
    path(wire.EVENTS_PATH, views.AgentEventsView.as_view(), name="agent-events"),
    path(wire.CONFIG_PATH, views.AgentConfigView.as_view(), name="agent-config"),
    path("metrics/", views.TenantMetricsView.as_view(), name="tenant-metrics"),
    *router.urls,
]
