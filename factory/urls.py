from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from factory import wire
from factory.core.health import healthz, readyz, readyz_component
from factory.core.site import ApiRootView, favicon, root
from factory.telemetry.api.views import MetricsView

API_V1 = wire.API_ROOT.removeprefix("/")  # where site agents find their gateway, too
api_v1 = [
    path("", include("factory.catalog.api.urls")),
    path("", include("factory.inventory.api.urls")),
    path("", include("factory.agents.api.urls")),
    path("", include("factory.telemetry.api.urls")),
    path("", include("provisioning.api.urls")),
    path("", include("provisioning.placement.api.replacement_urls")),
    path("", include("provisioning.placement.api.topology_urls")),
    path("", include("provisioning.placement.api.urls")),
    path("", include("tenants.api.urls")),
    path("", include("tenants.sovereignty.api.urls")),
    path("", include("tenants.events.api.urls")),
    path("", include("tenants.evidence.urls")),
]

urlpatterns = [
    path("", root, name="root"),
    path("favicon.ico", favicon, name="favicon"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("readyz/<slug:name>", readyz_component, name="readyz-component"),
    path("metrics", MetricsView.as_view(), name="metrics"),
    path(API_V1, ApiRootView.as_view(patterns=api_v1), name="api-root"),
    path(API_V1, include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("console/", include("provisioning.console.urls")),
]

handler400 = "factory.core.errors.bad_request"
handler403 = "factory.core.errors.permission_denied"
handler404 = "factory.core.errors.page_not_found"
handler500 = "factory.core.errors.server_error"
