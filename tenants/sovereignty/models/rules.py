"""A tenant's structured sovereignty rules."""

from __future__ import annotations

import functools

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Value

from tenants.sovereignty.core.cedar import validation_errors
from tenants.sovereignty.core.model import (
    OWN_ROOTS,
    Rule,
    RuleKind,
)
from tenants.sovereignty.core.rules import (
    Places,
    RuleError,
    UnknownPlace,
    describe,
    expand_places,
    pin_roots,
    pins_roots,
    place_groups,
    validate_params,
)
from tenants.sovereignty.models.base import choices_of as _choices


@functools.cache
def country_codes() -> frozenset[str]:
    """Every ISO 3166-1 alpha-2 code (``django_countries``' list)."""
    from django_countries import countries

    return frozenset(code for code, _ in countries)


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
    pinned_groups = models.JSONField(
        default=dict,
        blank=True,
        help_text="The group versions this rule names, pinned when it was activated: "
        '{code: {"group": id, "version": n, "countries": [...]}}. Decisions use these.',
    )
    pinned_roots = models.JSONField(
        default=list,
        # In the database too: the previous version, still serving during an upgrade, inserts
        # rules without this column (tests/migration_compat.py).
        db_default=Value([], output_field=models.JSONField()),
        blank=True,
        help_text="For an artifact_provenance rule that requires a signature and names no "
        "trust_roots: the refs of the provider's roots for its origins in force when it was "
        "activated, and tenant:_own (the tenant's own roots). Only these verify for it; a provider "
        "root registered later reaches it when the tenant re-activates.",
    )
    activation_what_if = models.JSONField(
        null=True,
        blank=True,
        help_text="What the rule would deny when it was activated (the what-if shown then).",
    )

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

    def known_places(self) -> Places:
        """The countries (ISO 3166-1 alpha-2) and the groups (built-in or this tenant's) a rule
        of this tenant may name."""
        from tenants.sovereignty.models.groups import JurisdictionGroup

        groups = JurisdictionGroup.objects.filter(
            models.Q(tenant__isnull=True) | models.Q(tenant_id=self.tenant_id)
        ).values_list("code", flat=True)
        return Places(country_codes(), frozenset(groups))

    def current_groups(self) -> dict[str, dict]:
        """The current version of each group this rule names, as a pin: the tenant's own group
        of that code, else the built-in one. Groups that do not exist are left out."""
        from tenants.sovereignty.models.groups import JurisdictionGroup

        names = self.named_groups()
        if not names:
            return {}
        found: dict[str, dict] = {}
        rows = JurisdictionGroup.objects.filter(
            models.Q(tenant__isnull=True) | models.Q(tenant_id=self.tenant_id), code__in=names
        ).order_by(models.F("tenant_id").asc(nulls_first=True))
        for group in rows:  # built-in first, so that the tenant's own group of a code wins
            found[group.code] = {
                "group": group.pk,
                "version": group.version,
                "builtin": group.tenant_id is None,
                "countries": sorted(group.countries),
            }
        return found

    def expanded_params(self) -> dict:
        """The params with every group replaced by its countries: the pinned versions once the
        rule has been activated, the current ones while it is a draft (what-if). A group that
        cannot be resolved admits nothing (fail closed)."""
        draft = self.status == RuleStatus.DRAFT
        pins = self.current_groups() if draft else self.pinned_groups
        groups = {code: pin["countries"] for code, pin in (pins or {}).items()}
        roots = self.current_roots() if draft else (self.pinned_roots or [])
        try:
            expanded = expand_places(self.kind, self.params, country_codes(), groups)
        except ValueError:
            expanded = self.params
        return pin_roots(self.kind, expanded, roots)

    @property
    def pins_roots(self) -> bool:
        """A provenance rule that requires a signature and names no roots: it pins them."""
        return pins_roots(self.kind, self.params or {})

    def current_roots(self) -> list[str]:
        """What activation pins for a rule that trusts "any root": the refs of the provider's
        unrevoked roots for the rule's origins, and ``OWN_ROOTS`` (the tenant's own roots, which
        are the tenant's to change, count as they are)."""
        from tenants.sovereignty.models.trust import TrustRoot

        params = self.params or {}
        if not self.pins_roots or not isinstance(params.get("origins"), list):
            return []
        roots = TrustRoot.objects.filter(
            tenant__isnull=True, origin__in=params["origins"], revoked_at__isnull=True
        )
        return sorted({OWN_ROOTS, *(root.ref for root in roots.only("tenant_id", "name"))})

    def named_groups(self) -> set[str]:
        """The group codes this rule's place parameters name."""
        try:
            return place_groups(self.kind, self.params, country_codes())
        except ValueError:
            return set()

    def _check_references(self) -> None:
        """A draft names only trust roots and key stores that exist for its tenant: an unknown
        name would be accepted and then never match, so the rule would silently deny all."""
        from tenants.sovereignty.models.keys import ExternalKeyStore
        from tenants.sovereignty.models.trust import TrustRoot

        params = self.params or {}
        if self.kind == RuleKind.ARTIFACT_PROVENANCE and params.get("trust_roots"):
            roots = TrustRoot.objects.filter(
                models.Q(tenant__isnull=True) | models.Q(tenant_id=self.tenant_id),
                revoked_at__isnull=True,
            )
            known = {root.ref for root in roots.only("tenant_id", "name")}
            for ref in params["trust_roots"]:
                if ref not in known:
                    raise ValidationError(
                        {
                            "params.trust_roots": ValidationError(
                                f"{ref!r} is not a trust root of this tenant or the provider "
                                "(provider:<name> or tenant:<name>, not revoked)",
                                code="unknown_trust_root",
                            )
                        }
                    )
        if self.kind == RuleKind.KEY_CUSTODY and params.get("stores"):
            stores = ExternalKeyStore.objects.filter(tenant_id=self.tenant_id)
            known = set(stores.values_list("name", flat=True))
            for name in params["stores"]:
                if name not in known:
                    raise ValidationError(
                        {
                            "params.stores": ValidationError(
                                f"{name!r} is not one of this tenant's external key stores",
                                code="unknown_key_store",
                            )
                        }
                    )

    def clean(self) -> None:
        stored_status = None
        if self.pk:
            stored_status = (
                type(self).objects.filter(pk=self.pk).values_list("status", flat=True).first()
            )
        # Places are checked while the rule is written (a draft); a frozen rule keeps what it
        # pinned even if a group it named has gone since.
        places = (
            self.known_places()
            if stored_status in (None, RuleStatus.DRAFT) and self.tenant_id
            else None
        )
        try:
            self.params = validate_params(self.kind, self.params, places)
        except UnknownPlace as error:
            raise ValidationError(
                {error.field: ValidationError(error.message, code="unknown_place")}
            ) from None
        except RuleError as error:
            field = "kind" if error.field == "kind" else "params"
            raise ValidationError(
                {field: ValidationError(f"{error.field}: {error.message}", code="invalid_rule")}
            ) from None
        if places is not None:
            self._check_references()
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
