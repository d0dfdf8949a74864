from django.db import models
from django_countries.fields import CountryField

from tenants.choices import TenantKind


class Tenant(models.Model):
    """A customer: the owner of the premises that host an AI factory, and of its data."""

    #: API filters on a relation to this model take an id or this (tenants.filters).
    natural_key_field = "slug"

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=20, choices=TenantKind.choices)
    country = CountryField(help_text="Home country (ISO 3166-1 alpha-2).")
    contact_email = models.EmailField(
        help_text="Where notices go: maintenance, drains, access requests."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def owning_tenant_id(self) -> int | None:
        return self.pk
