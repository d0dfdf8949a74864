from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from factory.agents import services
from factory.agents.api import serializers as s
from factory.agents.api.authentication import SiteAgentView
from factory.agents.models import AgentCommand, SiteAgent
from tenants.api.base import ScopedViewSetMixin, change_context
from tenants.choices import Role


class SiteAgentViewSet(
    ScopedViewSetMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Site agent credentials. Provider admins issue (the token is shown once) and revoke;
    the site's tenant reads them."""

    queryset = SiteAgent.objects.select_related("site")
    serializer_class = s.SiteAgentSerializer
    tenant_fields = ("site__tenant",)
    filterset_fields = ["site", "name", "last_seen_at", "revoked_at"]
    ordering_fields = ["name", "last_seen_at"]

    @extend_schema(responses={201: s.IssuedSiteAgentSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        site = serializer.validated_data["site"]
        agent, clear = services.issue_agent(
            site, serializer.validated_data["name"], change_context(request)
        )
        agent.token = clear
        return Response(s.IssuedSiteAgentSerializer(agent).data, status=201)

    @extend_schema(request=None, responses=s.SiteAgentSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        agent = self.get_object()
        services.revoke_agent(agent, change_context(request))
        return Response(s.SiteAgentSerializer(agent).data)


class AgentCommandViewSet(ScopedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """What was asked of each site's hardware, and what it answered (read-only)."""

    queryset = AgentCommand.objects.select_related("ultraserver")
    serializer_class = s.AgentCommandSerializer
    tenant_fields = ("site__tenant",)
    filterset_fields = ["site", "ultraserver", "state", "kind", "created_at", "completed_at"]
    ordering_fields = ["created_at", "completed_at"]
    read_roles = frozenset(Role)


class AgentClaimView(SiteAgentView):
    """The agent's long-poll: up to ``limit`` of its site's queued commands, waiting up to
    ``wait_seconds`` for one (while this process has a thread to wait with; else at once, with
    ``retry_after_seconds``). Each command is handed out once."""

    @extend_schema(request=s.ClaimRequestSerializer, responses=s.ClaimResponseSerializer)
    def post(self, request):
        params = s.ClaimRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        claimed = services.claim_waiting(request.auth, **params.validated_data)
        body: dict = {"commands": s.ClaimedCommandSerializer(claimed.commands, many=True).data}
        if claimed.retry_after_seconds is not None:
            body["retry_after_seconds"] = claimed.retry_after_seconds
        return Response(body)


class AgentResultView(SiteAgentView):
    """The agent reports a command's outcome; repeating the same report is harmless."""

    @extend_schema(request=s.ResultSerializer, responses=s.AgentCommandSerializer)
    def post(self, request, command_id):
        body = s.ResultSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with transaction.atomic():
            command = services.complete(request.auth, command_id, **body.validated_data)
        return Response(s.AgentCommandSerializer(command).data)


class AgentBatchResultView(SiteAgentView):
    """Several outcomes in one request, recorded all or nothing; repeating one is harmless."""

    @extend_schema(request=s.BatchResultSerializer, responses=s.BatchResultResponseSerializer)
    def post(self, request):
        body = s.BatchResultSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        results = [
            services.CommandResult(item["id"], item["ok"], item["result"], item["error"])
            for item in body.validated_data["results"]
        ]
        commands = services.complete_many(request.auth, results)
        return Response({"commands": s.AgentCommandSerializer(commands, many=True).data})
