from rest_framework.routers import SimpleRouter

from factory.catalog.api import views

router = SimpleRouter(trailing_slash=True)
router.register("catalog/chip-models", views.ChipModelViewSet)
router.register("catalog/ultraserver-models", views.UltraServerModelViewSet)

urlpatterns = router.urls
