from django.urls import path
from rest_framework.routers import SimpleRouter

from tenants.sovereignty.api import facts, keys, lockbox, trust, views

router = SimpleRouter(trailing_slash=True)
router.register("sovereignty/groups", views.JurisdictionGroupViewSet)
router.register("sovereignty/assets", views.ProtectedAssetViewSet)
router.register("sovereignty/rules", views.RuleViewSet)
router.register("sovereignty/access-requests", lockbox.LockboxAccessRequestViewSet)
router.register(
    "sovereignty/lockbox-policies", lockbox.LockboxPolicyViewSet, basename="lockbox-policy"
)
router.register("sovereignty/transfer-bases", views.TransferBasisViewSet)
router.register("sovereignty/decisions", views.DecisionRecordViewSet)
router.register("sovereignty/trust-roots", trust.TrustRootViewSet)
router.register("sovereignty/key-stores", keys.ExternalKeyStoreViewSet)
router.register("sovereignty/fact-changes", facts.FactChangeNoticeViewSet)

urlpatterns = [
    path("sovereignty/evaluate/", views.EvaluateView.as_view(), name="sovereignty-evaluate"),
    *router.urls,
]
