from django.conf import settings
from django.db import models
from django.utils import timezone

from tenants.choices import TokenScope


class ApiToken(models.Model):
    """A bearer token. Only its SHA-256 digest is stored: the token itself is shown once, when
    issued. Tokens are 256-bit random, so a fast hash is safe (no dictionary to attack)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="First characters, to recognise a token.")
    digest = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=8, choices=TokenScope.choices, default=TokenScope.WRITE)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    audit_exclude = frozenset({"digest", "last_used_at"})
    #: What the admin and the API show of a token (never its digest).
    SHOWN = ("name", "prefix", "scope", "created_at", "expires_at", "revoked_at", "last_used_at")

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"
        verbose_name_plural = "API tokens"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()

    @property
    def owning_tenant_id(self) -> int | None:
        """The tenant whose audit log shows this token's events: its owner's, when they belong
        to exactly one tenant. A provider person's tokens, and those of a person in several
        tenants (no one of which may see the others), belong to none: the provider's log."""
        memberships = self.user.memberships.filter(tenant__isnull=False)
        tenants = list(memberships.values_list("tenant_id", flat=True)[:2])
        return tenants[0] if len(tenants) == 1 else None
