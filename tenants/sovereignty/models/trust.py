"""Trust roots: the public keys whose signatures make a firmware release trusted, per origin."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from tenants.sovereignty.core import signing

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _invalid(field: str, message: str, code: str) -> ValidationError:
    return ValidationError({field: ValidationError(message, code=code)})


class TrustRoot(models.Model):
    """An Ed25519 public key trusted to sign what ``origin`` builds. The provider's roots have no
    tenant and count for every tenant; a tenant's own count for it alone. A rule names roots by
    ``ref`` (``provider:<name>``, ``tenant:<name>``). Revoked, a root verifies nothing any more;
    it is never deleted (decisions made with it stay explainable)."""

    tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="trust_roots",
    )
    name = models.CharField(max_length=64, help_text="Letters, digits, '.', '_' and '-'.")
    origin = models.CharField(max_length=200, help_text="The release origin this key signs for.")
    public_key = models.TextField(
        help_text="Ed25519 public key: PEM, or the raw 32 bytes in base64 (stored as base64)."
    )
    key_id = models.CharField(max_length=16, blank=True, editable=False, db_index=True)
    description = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.CharField(max_length=150, blank=True, editable=False)
    revoked_reason = models.CharField(max_length=500, blank=True, editable=False)

    class Meta:
        ordering = ["origin", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="trust_root_name_per_tenant"),
            models.UniqueConstraint(
                fields=["name"],
                condition=Q(tenant__isnull=True),
                name="trust_root_name_provider",
            ),
        ]

    def __str__(self) -> str:
        return self.ref

    @property
    def ref(self) -> str:
        """How a rule's ``trust_roots`` names this root."""
        return f"{'provider' if self.tenant_id is None else 'tenant'}:{self.name}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def clean(self) -> None:
        if not _NAME.match(self.name or ""):
            raise _invalid("name", "letters, digits, '.', '_' and '-', at most 64", "invalid_name")
        if not self.origin or "\n" in self.origin:
            raise _invalid("origin", "name the origin, one line", "invalid_origin")
        try:
            raw = signing.parse_public_key(self.public_key)
        except ValueError as exc:
            raise _invalid(
                "public_key", f"not an Ed25519 public key: {exc}", "invalid_key"
            ) from None
        self.public_key, self.key_id = signing.encode_key(raw), signing.key_id(raw)
