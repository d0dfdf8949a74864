from django.urls import path
from rest_framework.routers import SimpleRouter

from tenants.api import views

router = SimpleRouter(trailing_slash=True)
router.register("tenants", views.TenantViewSet)
router.register("audit-events", views.AuditEventViewSet)
router.register("tokens", views.ApiTokenViewSet, basename="apitoken")

urlpatterns = [
    path("auth/token/", views.TokenLoginView.as_view(), name="auth-token"),
    *router.urls,
]
