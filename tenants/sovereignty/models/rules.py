"""A tenant's structured sovereignty rules."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from tenants.sovereignty.core.cedar import validation_errors
from tenants.sovereignty.core.model import (
    Rule,
    RuleKind,
)
from tenants.sovereignty.core.rules import RuleError, describe, validate_params
from tenants.sovereignty.models.base import choices_of as _choices


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
