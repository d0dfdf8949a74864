"""API tokens: issued once in clear, stored as a digest, expiring and revocable."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.conf import settings
from django.utils import timezone

from tenants.choices import TokenScope
from tenants.models import ApiToken, User
from tenants.services import audit
from tenants.services.changes import ChangeContext

TOKEN_PREFIX = "afc_"
MAX_DAYS = 366
_LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    user: User,
    ctx: ChangeContext,
    *,
    name: str = "api",
    scope: str = TokenScope.WRITE,
    days: int | None = None,
) -> tuple[ApiToken, str]:
    """Returns the stored token row and the clear token (its only appearance)."""
    days = settings.API_TOKEN_DEFAULT_DAYS if days is None else days
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}")
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user=user,
        name=name,
        prefix=clear[:12],
        digest=digest(clear),
        scope=scope,
        expires_at=timezone.now() + dt.timedelta(days=days),
    )
    token.full_clean()
    token.save()
    audit.record_change(ctx, token, None)
    return token, clear


def revoke_token(token: ApiToken, ctx: ChangeContext) -> ApiToken:
    if token.revoked_at is None:
        before = audit.snapshot(token)
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record_change(ctx, token, before)
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
