from django.urls import path
from rest_framework.routers import SimpleRouter

from factory import wire
from factory.agents.api import views

router = SimpleRouter(trailing_slash=True)
router.register("site-agents", views.SiteAgentViewSet)
router.register("agent-commands", views.AgentCommandViewSet)

urlpatterns = [
    path(wire.CLAIM_PATH, views.AgentClaimView.as_view(), name="agent-claim"),
    path(wire.RESULTS_PATH, views.AgentBatchResultView.as_view(), name="agent-results"),
    path(wire.route(wire.RESULT_PATH), views.AgentResultView.as_view(), name="agent-result"),
    *router.urls,
]
