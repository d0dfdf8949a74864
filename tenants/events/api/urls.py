from rest_framework.routers import SimpleRouter

router = SimpleRouter(trailing_slash=True)
# The event log and its watch stream (views.py) and webhooks (webhooks.py) register here.

urlpatterns = [*router.urls]
