from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from tenants.api import conditional
from tenants.api.base import (
    AuditedModelViewSet,
    ObjectResponseMixin,
    ScopedViewSetMixin,
    change_context,
)
from tenants.api.permissions import OwnObjectPermission
from tenants.api.serializers import (
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
    AuditEventSerializer,
    IssuedApiTokenSerializer,
    TenantSerializer,
    TokenLoginSerializer,
)
from tenants.choices import TENANT_ROLES, Role
from tenants.filtersets import AuditEventFilterSet, TenantFilterSet
from tenants.models import ApiToken, AuditEvent, Tenant
from tenants.services.tokens import (
    issue_token,
    issue_token_for_login,
    revoke_token,
    tokens_of,
)


class TenantViewSet(AuditedModelViewSet):
    """Tenants. A tenant's people see their own; provider admins manage all."""

    queryset = Tenant.objects.all()
    serializer_class = TenantSerializer
    filterset_class = TenantFilterSet
    ordering_fields = ["name", "created_at"]
    tenant_fields = ("id",)


class AuditEventViewSet(ScopedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """The append-only audit log. Tenants read the events about their own objects."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    ordering_fields = ["occurred_at", "id"]
    tenant_fields = ("tenant_id",)
    read_roles = frozenset({Role.PROVIDER_ADMIN, *TENANT_ROLES})


class ApiTokenViewSet(
    ObjectResponseMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your own API tokens. Creating one shows it once; deleting one revokes it. A detail
    has its ETag (``If-None-Match`` is a 304); lists and details take ``?brief``/``?fields``."""

    serializer_class = ApiTokenSerializer
    permission_classes = [OwnObjectPermission]
    ordering_fields = ["created_at", "expires_at"]
    write_roles = frozenset(Role)
    etag_on_create = True  # issued_response: the ETag of the token as GET shows it

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApiToken.objects.none()
        return tokens_of(self.request.user)

    @extend_schema(request=ApiTokenCreateSerializer, responses={201: IssuedApiTokenSerializer})
    def create(self, request):
        """Create a token (shown once). With a session, or with a write-scoped token: a token
        creates none wider than itself, nor one that outlives it."""
        params = ApiTokenCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        within = request.auth if isinstance(request.auth, ApiToken) else None
        token, clear = issue_token(
            request.user, change_context(request), within=within, **params.validated_data
        )
        return issued_response(request, token, clear)

    def perform_destroy(self, instance):
        revoke_token(instance, change_context(self.request))


def issued_response(request, token: ApiToken, clear: str) -> Response:
    """201 with the clear token (its one appearance, so never cached), the token's absolute
    URL in ``Location`` and its ``ETag`` (of the token as ``GET`` shows it, without the clear
    token)."""
    body = IssuedApiTokenSerializer(token, context={"clear_token": clear}).data
    return Response(
        body,
        status=status.HTTP_201_CREATED,
        headers={
            "Location": reverse("apitoken-detail", args=[token.pk], request=request),
            "ETag": conditional.entity_tag(token, ApiTokenSerializer(token).data),
            "Cache-Control": "no-store",
        },
    )


_ERROR = {"$ref": "#/components/schemas/Error"}


class TokenLoginView(APIView):
    """Log in: your username and password for a new API token of yours, shown once.

    No other credential is read. After too many failed log-ins for a username from one address
    (`LOGIN_MAX_FAILURES` within `LOGIN_LOCKOUT_SECONDS`) that username is refused from there
    with 429 and `Retry-After` until the window has passed, even with the right password.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="auth_token_create",
        request=TokenLoginSerializer,
        responses={
            201: OpenApiResponse(
                IssuedApiTokenSerializer,
                description="The new token, shown only now; `Location` is its URL.",
            ),
            401: OpenApiResponse(_ERROR, description="Wrong username or password."),
            403: OpenApiResponse(_ERROR, description="The person has no role."),
            429: OpenApiResponse(
                _ERROR, description="Too many failed log-ins; see the Retry-After header."
            ),
        },
        auth=[],
    )
    def post(self, request):
        params = TokenLoginSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        username, password = data.pop("username"), data.pop("password")
        token, clear = issue_token_for_login(request._request, username, password, **data)
        return issued_response(request, token, clear)
