from rest_framework.routers import SimpleRouter

from provisioning.placement.api import views

router = SimpleRouter(trailing_slash=True)
router.register("capacity-reservations", views.CapacityReservationViewSet)
router.register("units", views.WorkloadUnitViewSet)

urlpatterns = router.urls
