from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django_countries.fields import CountryField

from tenants.choices import PROVIDER_ROLES, Clearance, Role


class User(AbstractUser):
    """A person. Nationality, residency and clearance are facts the sovereignty engine checks
    before a provider technician may act on a customer's site."""

    nationality = CountryField(blank=True)
    residency = CountryField(blank=True, help_text="Country of residence.")
    clearance = models.CharField(max_length=20, choices=Clearance.choices, default=Clearance.NONE)

    audit_exclude = frozenset({"password", "last_login"})

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"


class Membership(models.Model):
    """A person's role: in one tenant (tenant-*) or at the provider (provider-*, no tenant)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="memberships",
    )
    role = models.CharField(max_length=32, choices=Role.choices)

    class Meta:
        ordering = ["user__username"]
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="membership_once_per_tenant"),
            models.UniqueConstraint(
                fields=["user"],
                condition=Q(tenant__isnull=True),
                name="membership_one_provider_role",
            ),
            models.CheckConstraint(
                condition=(
                    Q(role__in=sorted(r.value for r in PROVIDER_ROLES), tenant__isnull=True)
                    | (
                        ~Q(role__in=sorted(r.value for r in PROVIDER_ROLES))
                        & Q(tenant__isnull=False)
                    )
                ),
                name="membership_role_matches_tenant",
                violation_error_message="provider roles have no tenant; tenant roles need one",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user.username}: {self.role}" + (
            f" @ {self.tenant}" if self.tenant_id else ""
        )

    def clean(self) -> None:
        if self.role in PROVIDER_ROLES and self.tenant_id:
            raise ValidationError({"tenant": "provider roles belong to no tenant"}, code="role")
        if self.role not in PROVIDER_ROLES and not self.tenant_id:
            raise ValidationError({"tenant": "tenant roles need a tenant"}, code="required")

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id
