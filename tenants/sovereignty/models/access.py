"""The customer lockbox: provider access requests, the votes on them, each use, the tenant's
policy, and break-glass."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from tenants.sovereignty.core import lockbox


def _country_code(value: object) -> bool:
    """An ISO 3166-1 alpha-2 code in capitals (``django_countries``' list, as rules use)."""
    from django_countries import countries

    return isinstance(value, str) and value.isupper() and value in dict(countries)


class AccessRequestStatus(models.TextChoices):
    PENDING = lockbox.Status.PENDING, "Pending"
    APPROVED = lockbox.Status.APPROVED, "Approved"
    REJECTED = lockbox.Status.REJECTED, "Rejected"
    EXPIRED = lockbox.Status.EXPIRED, "Expired (unanswered)"
    REVOKED = lockbox.Status.REVOKED, "Revoked by the tenant"
    ENDED = lockbox.Status.ENDED, "Ended"


class Justification(models.TextChoices):
    CUSTOMER_SUPPORT = lockbox.Justification.CUSTOMER_SUPPORT, "Customer-initiated support"
    PROVIDER_MAINTENANCE = lockbox.Justification.PROVIDER_MAINTENANCE, "Provider maintenance"
    PRODUCTION_ALERT = lockbox.Justification.PRODUCTION_ALERT, "Response to a production alert"
    SECURITY_INCIDENT = lockbox.Justification.SECURITY_INCIDENT, "Security incident"
    LEGAL_REQUEST = lockbox.Justification.LEGAL_REQUEST, "Legal or third-party request"
    SAFETY_HAZARD = lockbox.Justification.SAFETY_HAZARD, "Safety hazard on the premises"


class AccessScope(models.TextChoices):
    PHYSICAL_REPAIR = lockbox.Scope.PHYSICAL_REPAIR, "Physical repair on site"
    REMOTE_HANDS = lockbox.Scope.REMOTE_HANDS, "Remote hands"
    FIRMWARE = lockbox.Scope.FIRMWARE, "Firmware"
    READ_DIAGNOSTICS = lockbox.Scope.READ_DIAGNOSTICS, "Read diagnostics"


class ApprovalNeed(models.TextChoices):
    PRE_APPROVED = lockbox.Approval.PRE_APPROVED, "Pre-approved"
    ONE = lockbox.Approval.ONE, "One tenant admin"
    N_OF_M = lockbox.Approval.N_OF_M, "N of M named tenant admins"
    NEVER = lockbox.Approval.NEVER, "Never"


class AccessRequest(models.Model):
    """Provider access to a tenant's site for a person, a justification, a scope of actions and
    a window; approved as the tenant's lockbox policy requires (the requirement is frozen on the
    request when it is filed), or a break-glass use the tenant reviews afterwards."""

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
    justification = models.CharField(
        max_length=24, choices=Justification.choices, default=Justification.PROVIDER_MAINTENANCE
    )
    scope = models.CharField(
        max_length=20,
        choices=AccessScope.choices,
        default=AccessScope.PHYSICAL_REPAIR,
        help_text="What the person may do under this grant.",
    )
    office_country = models.CharField(
        max_length=2, blank=True, help_text="The country of the person's office (ISO 3166)."
    )
    physical_country = models.CharField(
        max_length=2,
        blank=True,
        help_text="Where the person will physically be at the time of access (ISO 3166).",
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    status = models.CharField(
        max_length=10, choices=AccessRequestStatus.choices, default=AccessRequestStatus.PENDING
    )
    # What the policy asked of this request when it was filed.
    approval = models.CharField(
        max_length=12, choices=ApprovalNeed.choices, default=ApprovalNeed.ONE, editable=False
    )
    approvals_needed = models.PositiveSmallIntegerField(default=1, editable=False)
    approvers = models.JSONField(
        default=list, blank=True, editable=False, help_text="N of M: the M admins' user ids."
    )
    answer_by = models.DateTimeField(
        null=True, blank=True, help_text="Unanswered by then, the request expires."
    )
    extends = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="extensions",
        help_text="The grant this request would extend (from its end, approved again).",
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    close_note = models.CharField(max_length=500, blank=True)
    break_glass = models.BooleanField(default=False, editable=False)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["person", "site", "status"], name="access_person_site_status")
        ]

    def __str__(self) -> str:
        return f"{self.person} @ {self.site_id} {self.starts_at:%Y-%m-%d %H:%M}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.tenant_id

    def live_status(self, now=None) -> lockbox.Status:
        """The status now (an unanswered request past its deadline has expired, a grant past its
        window has ended), whether or not the beat job has written it yet."""
        return lockbox.effective_status(
            self.status, now or timezone.now(), answer_by=self.answer_by, ends_at=self.ends_at
        )

    @property
    def needs_review(self) -> bool:
        return self.break_glass and self.reviewed_at is None

    def clean(self) -> None:
        if self.starts_at and self.ends_at:
            if self.ends_at <= self.starts_at:
                raise ValidationError({"ends_at": "must be after starts_at"}, code="invalid_window")
            if self.ends_at - self.starts_at > timezone.timedelta(days=14):
                raise ValidationError(
                    {"ends_at": "an access window is at most 14 days"}, code="window_too_long"
                )
        for name in ("office_country", "physical_country"):
            value = getattr(self, name)
            if value and not _country_code(value):
                raise ValidationError(
                    {name: "an ISO 3166-1 alpha-2 code in capitals"}, code="invalid_country"
                )


class AccessApproval(models.Model):
    """One tenant admin's vote on an access request: who, when, yes or no (each one audited and
    in the transparency log). One vote per admin and request."""

    request = models.ForeignKey(AccessRequest, on_delete=models.PROTECT, related_name="votes")
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    approve = models.BooleanField()
    note = models.CharField(max_length=500, blank=True)
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["decided_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["request", "approver"], name="one_vote_per_approver")
        ]

    def __str__(self) -> str:
        return f"{'approve' if self.approve else 'reject'} #{self.request_id} by {self.approver}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.request.tenant_id


class AccessUse(models.Model):
    """Each time someone acts under (or tries to act under) a grant: when, what for, where the
    person was, and whether it held. The dispatch and every later hardware step write one."""

    request = models.ForeignKey(
        AccessRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="uses"
    )
    tenant_id = models.BigIntegerField(db_index=True)
    site_id = models.BigIntegerField()
    person = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    occurred_at = models.DateTimeField(default=timezone.now)
    scope = models.CharField(max_length=20, choices=AccessScope.choices)
    office_country = models.CharField(max_length=2, blank=True)
    physical_country = models.CharField(max_length=2, blank=True)
    workflow_id = models.BigIntegerField(null=True, blank=True)
    step = models.CharField(max_length=40, blank=True)
    allowed = models.BooleanField()
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]

    def __str__(self) -> str:
        return f"{self.person} {self.scope} @ {self.site_id}: {'ok' if self.allowed else 'stopped'}"

    @property
    def owning_tenant_id(self) -> int:
        return self.tenant_id


def _default_entries() -> list[dict]:
    return [{"justification": lockbox.Justification.LEGAL_REQUEST, "approval": "never"}]


class LockboxPolicy(models.Model):
    """A tenant's lockbox policy, changed only by its own admins. Without one, the defaults of
    ``lockbox.Policy`` apply (one admin approves; legal requests never; no break-glass; the
    person must be in the site's country)."""

    tenant = models.OneToOneField(
        "tenants.Tenant", on_delete=models.PROTECT, related_name="lockbox_policy"
    )
    entries = models.JSONField(
        default=_default_entries,
        blank=True,
        help_text="(justification, scope) → approval: a list of {justification, scope, approval,"
        " n, approvers}; '*' matches any; the most specific entry wins.",
    )
    default_approval = models.CharField(
        max_length=12, choices=ApprovalNeed.choices, default=ApprovalNeed.ONE
    )
    emergency_codes = models.JSONField(
        default=list, blank=True, help_text="Justifications for which break-glass is allowed."
    )
    break_glass_minutes = models.PositiveSmallIntegerField(
        default=60,
        help_text=f"How long a break-glass use lasts, in minutes (at most "
        f"{lockbox.MAX_BREAK_GLASS_MINUTES}).",
    )
    answer_within_minutes = models.PositiveIntegerField(
        default=24 * 60, help_text="A request unanswered this long expires."
    )
    physical_in_site_country = models.BooleanField(
        default=True, help_text="The person must physically be in the site's country."
    )
    office_countries = models.JSONField(
        default=list, blank=True, help_text="Offices the person may work from (empty: any)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "lockbox policies"

    def __str__(self) -> str:
        return f"lockbox policy of {self.tenant_id}"

    @property
    def owning_tenant_id(self) -> int:
        return self.tenant_id

    def as_policy(self) -> lockbox.Policy:
        return lockbox.policy_from(
            {
                "entries": self.entries,
                "default_approval": self.default_approval,
                "emergency_codes": self.emergency_codes,
                "break_glass_minutes": self.break_glass_minutes,
                "answer_within_minutes": self.answer_within_minutes,
                "physical_in_site_country": self.physical_in_site_country,
                "office_countries": self.office_countries,
            }
        )

    def clean(self) -> None:
        errors: dict[str, list[ValidationError]] = {}
        if not 1 <= (self.break_glass_minutes or 0) <= lockbox.MAX_BREAK_GLASS_MINUTES:
            errors.setdefault("break_glass_minutes", []).append(
                ValidationError(
                    f"between 1 and {lockbox.MAX_BREAK_GLASS_MINUTES} minutes", code="out_of_range"
                )
            )
        if not 5 <= (self.answer_within_minutes or 0) <= 14 * 24 * 60:
            errors.setdefault("answer_within_minutes", []).append(
                ValidationError("between 5 minutes and 14 days", code="out_of_range")
            )
        unknown = sorted(set(self.emergency_codes or ()) - set(Justification.values))
        if not isinstance(self.emergency_codes, list) or unknown:
            errors.setdefault("emergency_codes", []).append(
                ValidationError(f"unknown justifications: {unknown}", code="unknown")
            )
        offices = self.office_countries
        if not isinstance(offices, list) or not all(_country_code(c) for c in offices):
            errors.setdefault("office_countries", []).append(
                ValidationError("ISO 3166-1 alpha-2 codes in capitals", code="invalid_country")
            )
        errors.update(self._entry_errors())
        if errors:
            raise ValidationError(errors)

    def _entry_errors(self) -> dict[str, list[ValidationError]]:
        """Each entry must parse and be satisfiable: known codes, N ≤ M, approvers who are this
        tenant's admins (a policy nobody can satisfy would lock the tenant out silently)."""
        from tenants.choices import Role
        from tenants.models import Membership

        entries = self.entries
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            return {"entries": [ValidationError("a list of objects", code="invalid")]}
        admins = set(
            Membership.objects.filter(tenant_id=self.tenant_id, role=Role.TENANT_ADMIN).values_list(
                "user_id", flat=True
            )
        )
        messages = []
        for i, raw in enumerate(entries):
            unknown = sorted(set(raw) - {"justification", "scope", "approval", "n", "approvers"})
            if unknown:
                messages.append(ValidationError(f"[{i}]: unknown keys {unknown}", code="unknown"))
                continue
            try:
                entry = lockbox.policy_from({"entries": [raw]}).entries[0]
            except (TypeError, ValueError) as exc:
                messages.append(ValidationError(f"[{i}]: {exc}", code="invalid"))
                continue
            for name, code, message in lockbox.entry_problems(entry, admins):
                messages.append(ValidationError(f"[{i}].{name}: {message}", code=code))
        return {"entries": messages} if messages else {}
