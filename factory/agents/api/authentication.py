from contextlib import ExitStack

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.views import APIView

from factory import wire
from factory.agents.services import authenticate_agent
from tenants.access import SYSTEM
from tenants.api.authentication import credential_for
from tenants.choices import AuditCause, AuditSource
from tenants.services import audit
from tenants.services.changes import ChangeContext


class AgentPrincipal:
    """``request.user`` for a site agent: authenticated, but no person and no roles."""

    is_authenticated = True
    is_anonymous = False
    is_superuser = False
    pk = None

    def __init__(self, agent):
        self.agent = agent

    def get_username(self) -> str:
        return f"agent:{self.agent.site_id}/{self.agent.name}"


class SiteAgentAuthentication(authentication.BaseAuthentication):
    """``Authorization: Agent <token>``: a site agent's credential, good for its own site only."""

    keyword = wire.AUTH_SCHEME

    def authenticate(self, request):
        clear = credential_for(request, self.keyword)
        if clear is None:
            return None
        agent = authenticate_agent(clear)
        if agent is None:
            raise exceptions.AuthenticationFailed(
                "Agent credential is invalid or revoked.", code="invalid_token"
            )
        return AgentPrincipal(agent), agent

    def authenticate_header(self, request):
        return self.keyword


class IsSiteAgent(permissions.BasePermission):
    def has_permission(self, request, view):
        if not isinstance(request.user, AgentPrincipal):
            raise exceptions.NotAuthenticated("These endpoints take a site agent's credential.")
        return True


class SiteAgentScheme(OpenApiAuthenticationExtension):
    target_class = "factory.agents.api.authentication.SiteAgentAuthentication"
    name = "agentAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": wire.AUTH_HEADER,
            "description": f"`{wire.AUTH_SCHEME} <token>`",
        }


class SiteAgentView(APIView):
    """Base of every endpoint a site agent calls: its ``Agent`` credential, nothing else, and
    the agents' rate limit (``RATE_LIMITS["agent"]``, far above a person's)."""

    authentication_classes = [SiteAgentAuthentication]
    permission_classes = [IsSiteAgent]
    throttle_scope = "agent"

    def initial(self, request, *args, **kwargs):
        """Once the agent is known: every change its request sets off that names no nearer
        cause (a fault's) is audited as caused by this agent, under the request's id."""
        super().initial(request, *args, **kwargs)
        agent = request.user.agent
        ctx = ChangeContext(SYSTEM, AuditSource.SYSTEM, getattr(request, "request_id", ""))
        self._cause.enter_context(audit.acting_for(ctx.caused_by(AuditCause.AGENT, agent.pk)))

    def dispatch(self, request, *args, **kwargs):
        self._cause = ExitStack()
        with self._cause:  # the cause ends with the request, whatever happens in it
            return super().dispatch(request, *args, **kwargs)
