from rest_framework.routers import SimpleRouter

from provisioning.api import views

router = SimpleRouter(trailing_slash=True)
router.register("workflows", views.WorkflowViewSet)
router.register("maintenance-windows", views.MaintenanceWindowViewSet)
router.register("capacity-floors", views.CapacityFloorViewSet)
router.register("firmware-releases", views.FirmwareReleaseViewSet)
router.register("faults", views.FaultViewSet, basename="fault")
router.register("notifications", views.NotificationViewSet)
router.register("jobs", views.JobRunViewSet)

urlpatterns = router.urls
