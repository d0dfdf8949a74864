from factory.inventory.api import views
from tenants.api.bulk import BulkRouter

# The list URLs also take PUT, PATCH and DELETE: bulk writes (tenants.api.bulk).
router = BulkRouter(trailing_slash=True)
router.register("sites", views.SiteViewSet)
router.register("racks", views.RackViewSet)
router.register("power-feeds", views.PowerFeedViewSet)
router.register("ultraservers", views.UltraServerViewSet)
router.register("chips", views.ChipViewSet)
router.register("capacity/sites", views.SiteCapacityViewSet, basename="site-capacity")

urlpatterns = router.urls
