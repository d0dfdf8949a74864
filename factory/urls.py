from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from factory.core.health import healthz, readyz
from factory.core.site import ApiRootView, favicon, root
from factory.telemetry.api.views import MetricsView

api_v1 = [
    path("", include("factory.catalog.api.urls")),
    path("", include("factory.inventory.api.urls")),
    path("", include("factory.agents.api.urls")),
    path("", include("factory.telemetry.api.urls")),
    path("", include("provisioning.api.urls")),
    path("", include("tenants.api.urls")),
    path("", include("tenants.sovereignty.api.urls")),
]

urlpatterns = [
    path("", root, name="root"),
    path("favicon.ico", favicon, name="favicon"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("api/v1/", ApiRootView.as_view(patterns=api_v1), name="api-root"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("console/", include("provisioning.console.urls")),
]

handler404 = "factory.core.errors.json_404"
handler500 = "factory.core.errors.json_500"
