from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from tenants.models.audit import AppendOnlyModel
from tenants.sovereignty.core.cedar import validation_errors
from tenants.sovereignty.core.model import (
    ASSET_KINDS,
    CLASSIFICATIONS,
    LEGAL_BASES,
    Rule,
    RuleKind,
)
from tenants.sovereignty.core.rules import RuleError, describe, validate_params


def _choices(values):
    return [(v, v) for v in values]


class JurisdictionGroup(models.Model):
    """A named set of countries ("EU", "EEA", or a tenant's own, e.g. "DACH"). Built-in groups
    have no tenant and are visible to everyone."""

    tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="jurisdiction_groups",
    )
    code = models.CharField(max_length=32, help_text="e.g. EU, EEA, DACH")
    name = models.CharField(max_length=200)
    countries = models.JSONField(default=list, help_text="ISO 3166-1 alpha-2 codes")

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "code"], name="group_code_unique_per_tenant"),
            models.UniqueConstraint(
                fields=["code"], condition=Q(tenant__isnull=True), name="group_code_unique_builtin"
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id

    def clean(self) -> None:
        from django_countries import countries

        if not isinstance(self.countries, list) or not self.countries:
            raise ValidationError(
                {"countries": "a non-empty list of country codes"}, code="invalid"
            )
        bad = [c for c in self.countries if not isinstance(c, str) or c not in countries]
        if bad:
            raise ValidationError(
                {"countries": f"not ISO 3166-1 alpha-2: {bad[0]!r}"}, code="invalid_country"
            )
        if not self.code.replace("-", "").isalnum():
            raise ValidationError({"code": "letters, digits and '-' only"}, code="invalid_code")
        if len(self.code) == 2 and self.code.upper() in countries:
            raise ValidationError(
                {"code": "a group code must not be a country code"}, code="code_is_country"
            )


class ProtectedAsset(models.Model):
    """Something of the tenant's that must stay within bounds: a dataset, model weights, a backup
    or replica, an encryption key. ``site`` is where it is now."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="assets")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=_choices(ASSET_KINDS))
    classification = models.CharField(max_length=16, choices=_choices(CLASSIFICATIONS))
    labels = models.JSONField(default=list, blank=True)
    site = models.ForeignKey(
        "inventory.Site", null=True, blank=True, on_delete=models.PROTECT, related_name="assets"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="asset_name_unique_per_tenant"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id

    def clean(self) -> None:
        labels = self.labels
        if not isinstance(labels, list) or not all(isinstance(v, str) and v for v in labels):
            raise ValidationError({"labels": "a list of non-empty strings"}, code="invalid")
        try:
            validate_params("colocation", {"labels": labels})
        except RuleError as error:
            raise ValidationError({"labels": error.message}, code="invalid_label") from None


class RuleStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    RETIRED = "retired", "Retired"


class SovereigntyRule(models.Model):
    """A customer's structured rule. Drafts can be edited and tried (what-if); active rules are
    enforced and frozen; a change to an active rule is a new draft that supersedes it."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="rules")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=24, choices=_choices([k.value for k in RuleKind]))
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=8, choices=RuleStatus.choices, default=RuleStatus.DRAFT)
    version = models.PositiveIntegerField(default=1)
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["tenant_id", "name", "-version"]
        indexes = [models.Index(fields=["tenant", "status"], name="rule_tenant_status_idx")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id

    @property
    def cedar_id(self) -> str:
        return f"rule-{self.pk}"

    @property
    def sentence(self) -> str:
        try:
            return describe(self.kind, validate_params(self.kind, self.params))
        except (RuleError, ValueError):
            return ""

    def clean(self) -> None:
        try:
            self.params = validate_params(self.kind, self.params)
        except RuleError as error:
            field = "kind" if error.field == "kind" else "params"
            raise ValidationError(
                {field: ValidationError(f"{error.field}: {error.message}", code="invalid_rule")}
            ) from None
        if self.supersedes_id and self.supersedes.tenant_id != self.tenant_id:
            raise ValidationError(
                {
                    "supersedes": ValidationError(
                        "a rule supersedes only its own tenant's rules", code="other_tenant"
                    )
                }
            )
        # The compiled policy must type-check against the Cedar schema, now, not at activation.
        problems = validation_errors([Rule("draft", str(self.tenant_id), self.kind, self.params)])
        if problems:
            raise ValidationError({"params": ValidationError(problems[0], code="invalid_policy")})
        if self.pk:
            stored = (
                type(self).objects.filter(pk=self.pk).values("status", "kind", "params").first()
            )
            if (
                stored
                and stored["status"] != RuleStatus.DRAFT
                and (stored["kind"] != self.kind or stored["params"] != self.params)
            ):
                raise ValidationError(
                    {
                        "params": ValidationError(
                            f"rule is {stored['status']}: only drafts change; create a new draft "
                            "that supersedes it",
                            code="rule_frozen",
                        )
                    }
                )


class TransferBasis(models.Model):
    """A legal basis for transfers to a destination (country or group), on record: an adequacy
    decision, standard contractual clauses or binding corporate rules."""

    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.PROTECT, related_name="transfer_bases"
    )
    kind = models.CharField(max_length=16, choices=_choices(LEGAL_BASES))
    destination = models.CharField(max_length=32, help_text="Country code or group code.")
    reference = models.CharField(max_length=300, help_text="e.g. the decision or contract.")
    valid_until = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["destination", "kind"]

    def __str__(self) -> str:
        return f"{self.kind} for {self.destination}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id

    def clean(self) -> None:
        try:
            validate_params("residency", {"allowed": [self.destination]})
        except RuleError as error:
            raise ValidationError({"destination": error.message}, code="invalid_code") from None


class AccessRequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class AccessRequest(models.Model):
    """The customer lockbox: provider access to a site for a person, for a window, approved (or
    not) by one of the tenant's admins."""

    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.PROTECT, related_name="access_requests"
    )
    site = models.ForeignKey(
        "inventory.Site", on_delete=models.PROTECT, related_name="access_requests"
    )
    person = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="access_requests"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=500)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    status = models.CharField(
        max_length=10, choices=AccessRequestStatus.choices, default=AccessRequestStatus.PENDING
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.person} @ {self.site_id} {self.starts_at:%Y-%m-%d %H:%M}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id

    def clean(self) -> None:
        if self.starts_at and self.ends_at:
            if self.ends_at <= self.starts_at:
                raise ValidationError({"ends_at": "must be after starts_at"}, code="invalid_window")
            if self.ends_at - self.starts_at > timezone.timedelta(days=14):
                raise ValidationError(
                    {"ends_at": "an access window is at most 14 days"}, code="window_too_long"
                )


class DecisionRecord(AppendOnlyModel):
    """Access transparency: every sovereignty decision about a tenant's site or asset, allowed or
    denied, with the rules that decided it. Append-only, like the audit log."""

    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    tenant_id = models.BigIntegerField(db_index=True)
    actor_username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=32, db_index=True)
    principal = models.CharField(max_length=150, blank=True, help_text="the person acting, if any")
    resource_type = models.CharField(max_length=32)
    resource_id = models.CharField(max_length=64)
    resource_repr = models.CharField(max_length=200)
    site_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    allowed = models.BooleanField()
    rule_ids = models.JSONField(default=list)
    reasons = models.JSONField(default=list)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]

    def __str__(self) -> str:
        verdict = "allowed" if self.allowed else "denied"
        return f"{self.action} {self.resource_repr}: {verdict}"

    @property
    def owning_tenant_id(self) -> int:
        return self.tenant_id
