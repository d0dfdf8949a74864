from django.urls import path
from rest_framework.routers import SimpleRouter

from tenants.sovereignty.api import views

router = SimpleRouter(trailing_slash=True)
router.register("sovereignty/groups", views.JurisdictionGroupViewSet)
router.register("sovereignty/assets", views.ProtectedAssetViewSet)
router.register("sovereignty/rules", views.RuleViewSet)
router.register("sovereignty/access-requests", views.AccessRequestViewSet)
router.register("sovereignty/transfer-bases", views.TransferBasisViewSet)
router.register("sovereignty/decisions", views.DecisionRecordViewSet)

urlpatterns = [
    path("sovereignty/evaluate/", views.EvaluateView.as_view(), name="sovereignty-evaluate"),
    *router.urls,
]
