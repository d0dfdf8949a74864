"""API tokens: issued once in clear, stored as a digest, expiring and revocable."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets

import structlog
from django.conf import settings
from django.contrib.auth import authenticate
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from tenants.access import actor_for
from tenants.choices import AuditSource, TokenScope
from tenants.errors import Denied, Invalid, TooManyRequests, Unauthenticated
from tenants.models import ApiToken, User
from tenants.services import audit, logins
from tenants.services.changes import ChangeContext

TOKEN_PREFIX = "afc_"
MAX_DAYS = 366
_LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
logger = structlog.get_logger(__name__)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_SCOPE_RANK: dict[str, int] = {TokenScope.READ: 0, TokenScope.WRITE: 1}  # wider is higher


def issue_token(
    user: User,
    ctx: ChangeContext,
    *,
    name: str = "api",
    scope: str = TokenScope.WRITE,
    days: int | None = None,
    within: ApiToken | None = None,
) -> tuple[ApiToken, str]:
    """Returns the stored token row and the clear token (its only appearance).

    ``within``: the token the request came with, when a token mints a token. The new one may be
    no wider than it (a read-scoped token mints none) and lives no longer: ``days`` may be at
    most the days it has left, rounded up, and the new token expires with it at the latest.
    """
    lifetime = settings.API_TOKEN_DEFAULT_DAYS if days is None else days
    if not 1 <= lifetime <= MAX_DAYS:
        raise Invalid(f"days must be between 1 and {MAX_DAYS}", code="out_of_range", field="days")
    now = timezone.now()
    expires_at = now + dt.timedelta(days=lifetime)
    if within is not None:
        if within.user_id != user.pk:
            raise Denied("A token mints tokens for its own person only.", code="token_owner")
        if within.scope == TokenScope.READ:
            raise Denied("A read-scoped token cannot create tokens.", code="token_read_only")
        if _SCOPE_RANK.get(scope, len(_SCOPE_RANK)) > _SCOPE_RANK.get(within.scope, -1):
            raise Denied(
                f"this token is {within.scope}-scoped; it cannot create a {scope}-scoped one",
                code="token_scope_wider",
                field="scope",
            )
        left = math.ceil((within.expires_at - now) / dt.timedelta(days=1))
        if days is not None and days > left:
            raise Denied(
                f"this token expires on {within.expires_at:%Y-%m-%d}; a token it creates may "
                f"live at most {left} day{'s' if left != 1 else ''}",
                code="token_outlives_caller",
                field="days",
            )
        expires_at = min(expires_at, within.expires_at)
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user=user,
        name=name,
        prefix=clear[:12],
        digest=digest(clear),
        scope=scope,
        expires_at=expires_at,
    )
    token.full_clean()
    with transaction.atomic():
        token.save()
        audit.record_change(ctx, token, None)
    logger.info("api token issued", token_id=token.pk, user=user.get_username(), scope=scope)
    return token, clear


@sensitive_variables("password")
def issue_token_for_login(
    request: HttpRequest,
    username: str,
    password: str,
    *,
    source: str = AuditSource.API,
    name: str = "api",
    scope: str = TokenScope.WRITE,
    days: int | None = None,
) -> tuple[ApiToken, str]:
    """A person's username and password exchanged for a new token of theirs.

    Refused with ``TooManyRequests`` (429) while the username is locked out from the client's
    address (``tenants.services.logins``: failed log-ins are counted by the authentication
    backend), ``Unauthenticated`` (401) for a wrong username or password, ``Denied`` (403) for
    a person with no role. Issuing is audited with the person as the actor.
    """
    address = logins.client_address(request)
    wait = logins.locked_for(username, address)
    if wait:
        raise _locked_out(wait)
    user = authenticate(request, username=username, password=password)
    if user is None:  # counted by the backend; the next attempt after the last allowed is 429
        raise Unauthenticated("The username or password is wrong.", code="invalid_credentials")
    actor = actor_for(user)
    if not actor.roles:
        raise Denied("You have no role in the AI factory.", code="role")
    ctx = ChangeContext(actor=actor, source=source, request_id=getattr(request, "request_id", ""))
    return issue_token(user, ctx, name=name, scope=scope, days=days)


def _locked_out(wait: int) -> TooManyRequests:
    return TooManyRequests(logins.lockout_message(wait), code="login_locked_out", retry_after=wait)


def tokens_of(user: User) -> QuerySet[ApiToken]:
    """A person's own tokens, newest first: all anyone lists or revokes (others' are 404)."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-pk")


def revoke_token(token: ApiToken, ctx: ChangeContext) -> ApiToken:
    """Revoke ``token`` (audited); revoking a revoked token changes nothing."""
    if token.revoked_at is None:
        before = audit.snapshot(token)
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record_change(ctx, token, before)
        logger.info("api token revoked", token_id=token.pk, by=ctx.actor.username)
    return token


def authenticate_token(clear: str) -> ApiToken | None:
    """The active token for this clear text, or None (unknown, expired or revoked)."""
    if not clear.startswith(TOKEN_PREFIX) or len(clear) > 100:
        return None
    token = ApiToken.objects.select_related("user").filter(digest=digest(clear)).first()
    if token is None or not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        # Recorded at most once a minute: a hot token does not write on every request.
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
