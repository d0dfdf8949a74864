from django.urls import path
from rest_framework.routers import SimpleRouter

from factory.agents.api import views

router = SimpleRouter(trailing_slash=True)
router.register("site-agents", views.SiteAgentViewSet)
router.register("agent-commands", views.AgentCommandViewSet)

urlpatterns = [
    path("agent/commands/claim/", views.AgentClaimView.as_view(), name="agent-claim"),
    path("agent/commands/results/", views.AgentBatchResultView.as_view(), name="agent-results"),
    path(
        "agent/commands/<uuid:command_id>/result/",
        views.AgentResultView.as_view(),
        name="agent-result",
    ),
    *router.urls,
]
