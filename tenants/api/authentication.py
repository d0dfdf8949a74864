from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from tenants.access import actor_for
from tenants.choices import TokenScope
from tenants.services.tokens import authenticate_token


def credential_for(request, keyword: str) -> str | None:
    """The token of an ``Authorization: <keyword> <token>`` header; None if the header names
    another scheme; 401 if it is malformed."""
    header = authentication.get_authorization_header(request).split()
    if not header or header[0].lower() != keyword.lower().encode():
        return None
    if len(header) != 2:
        raise exceptions.AuthenticationFailed(
            f"Authorization header must be '{keyword} <token>'.", code="malformed_credentials"
        )
    try:
        return header[1].decode("ascii")
    except UnicodeDecodeError:
        raise exceptions.AuthenticationFailed(
            "Token has invalid characters.", code="malformed_credentials"
        ) from None


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <token>``. Unknown, expired and revoked tokens are all 401."""

    keyword = "Bearer"

    def authenticate(self, request):
        clear = credential_for(request, self.keyword)
        if clear is None:
            return None
        token = authenticate_token(clear)
        if token is None:
            raise exceptions.AuthenticationFailed(
                "Token is invalid, expired or revoked.", code="invalid_token"
            )
        user = token.user
        user._factory_actor = actor_for(user, read_only=token.scope == TokenScope.READ)
        return user, token

    def authenticate_header(self, request):
        return self.keyword


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer"}
