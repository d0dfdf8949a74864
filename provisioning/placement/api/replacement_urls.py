from rest_framework.routers import SimpleRouter

from provisioning.placement.api import replacements

router = SimpleRouter(trailing_slash=True)
router.register(
    r"units/(?P<unit_pk>[0-9]+)/replacements",
    replacements.UnitReplacementViewSet,
    basename="unit-replacement",
)

urlpatterns = router.urls
