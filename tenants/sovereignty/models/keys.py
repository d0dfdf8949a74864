"""External key stores a tenant holds (XKS-style: AWS External Key Store as the anchor).

The keys protecting a tenant's assets at a site live in a store the customer runs; the provider
only asks it to wrap and unwrap. When the customer disconnects the store, nothing encrypted
under its keys can be read, so the assets that depend on it are unavailable and nothing new is
placed at the sites it serves until it is reconnected.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django_countries.fields import CountryField

#: A store's name is how a ``key_custody`` rule names it (``params.stores``): a rule token.
STORE_NAME = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$",
    "letters, digits and _ . : / - (at most 64), starting with a letter or digit",
    code="invalid_name",
)


class KeyStoreState(models.TextChoices):
    CONNECTED = "connected", "Connected"
    DISCONNECTED = "disconnected", "Disconnected"


class ExternalKeyStore(models.Model):
    """A key store the customer holds, and the sites whose assets are encrypted under its keys.

    "Depends" is kept simple and strict: every asset of the store's tenant at a site the store
    serves (keys held in it; datasets, models, backups and replicas encrypted under them)."""

    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.PROTECT, related_name="key_stores"
    )
    name = models.CharField(max_length=64, validators=[STORE_NAME])
    endpoint_url = models.URLField(max_length=300, help_text="The store's XKS proxy endpoint.")
    country = CountryField(help_text="Where the store (its HSMs) is, ISO 3166-1 alpha-2.")
    sites = models.ManyToManyField(
        "inventory.Site",
        blank=True,
        related_name="external_key_stores",
        help_text="The tenant's sites whose assets are encrypted under this store's keys.",
    )
    state = models.CharField(
        max_length=16, choices=KeyStoreState.choices, default=KeyStoreState.CONNECTED
    )
    state_changed_at = models.DateTimeField(null=True, blank=True)
    state_changed_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="key_store_name_per_tenant"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id

    @property
    def connected(self) -> bool:
        return self.state == KeyStoreState.CONNECTED

    def clean(self) -> None:
        if self.endpoint_url and not self.endpoint_url.startswith("https://"):
            raise ValidationError(
                {"endpoint_url": "an external key store is reached over https only"},
                code="insecure_endpoint",
            )
