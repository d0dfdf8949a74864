from rest_framework.routers import SimpleRouter

from factory.inventory.api import views

router = SimpleRouter(trailing_slash=True)
router.register("sites", views.SiteViewSet)
router.register("racks", views.RackViewSet)
router.register("power-feeds", views.PowerFeedViewSet)
router.register("ultraservers", views.UltraServerViewSet)
router.register("chips", views.ChipViewSet)
router.register("capacity/sites", views.SiteCapacityViewSet, basename="site-capacity")

urlpatterns = router.urls
