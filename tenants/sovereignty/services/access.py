"""Provider personnel on a tenant's site: the lockbox (requests judged by the tenant's policy,
N-of-M votes, extend, revoke, expiry, break-glass and its review), each use of a grant, and the
personnel rules. The rules themselves are pure (``core/lockbox.py``); this module stores, audits
and announces."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from django.db import models, transaction
from django.dispatch import Signal
from django.utils import timezone

from tenants.choices import Role
from tenants.errors import Conflict, Denied, Invalid
from tenants.events.kinds import EventKind, timestamp
from tenants.events.services import emit
from tenants.models import Membership
from tenants.services.changes import ChangeContext, save_object
from tenants.sovereignty.core import lockbox
from tenants.sovereignty.core.model import (
    Action,
    Decision,
    Request,
)
from tenants.sovereignty.models import (
    AccessApproval,
    AccessRequest,
    AccessRequestStatus,
    AccessUse,
    DecisionRecord,
    LockboxPolicy,
)

if TYPE_CHECKING:
    from tenants.models import User
from tenants.sovereignty.services.decisions import (
    SiteLike,
    SovereigntyDenied,
    Subject,
    decide,
    decision_context,
    person_facts,
)

LIVE = (AccessRequestStatus.PENDING, AccessRequestStatus.APPROVED)
#: Sent (``access=``) in the transaction that revokes or ends a grant, so that whatever acts
#: under it (the maintain workflow's steps) re-checks now rather than at its next poll.
ACCESS_ENDED = Signal()


def policy_for(tenant_id: int) -> lockbox.Policy:
    """The tenant's lockbox policy, or the secure default when it has not written one."""
    stored = LockboxPolicy.objects.filter(tenant_id=tenant_id).first()
    return stored.as_policy() if stored else lockbox.Policy()


def lockbox_policy(tenant_id: int) -> LockboxPolicy:
    """The tenant's stored policy, or an unsaved one holding the defaults (for display/edit)."""
    return LockboxPolicy.objects.filter(tenant_id=tenant_id).first() or LockboxPolicy(
        tenant_id=tenant_id
    )


def save_policy(policy: LockboxPolicy, ctx: ChangeContext) -> LockboxPolicy:
    """Validated (``LockboxPolicy.clean``) and audited; the caller checks it is the tenant's
    own admin. Requests already filed keep the requirement they were filed under."""
    return save_object(policy, ctx)


def _site_country(site: SiteLike) -> str:
    country = site.country
    return str(getattr(country, "code", country) or "")


def _is_tenant_admin(user: User, tenant_id: int) -> bool:
    return Membership.objects.filter(
        user=user, tenant_id=tenant_id, role=Role.TENANT_ADMIN
    ).exists()


def _transparency(
    access: AccessRequest, ctx: ChangeContext, action: str, allowed: bool, why: str
) -> None:
    """A lockbox event in the tenant's access-transparency log (beside its audit record)."""
    DecisionRecord.objects.create(
        tenant_id=access.tenant_id,
        actor_username=ctx.actor.username,
        action=action,
        principal=access.person.get_username(),
        resource_type="access-request",
        resource_id=str(access.pk),
        resource_repr=str(access)[:200],
        site_id=access.site_id,
        site_owner_id=access.site.tenant_id,
        allowed=allowed,
        rule_ids=[],
        reasons=[why],
        request_id=ctx.request_id[:64],
    )


def _announce_access(kind: EventKind, access: AccessRequest, **more: Any) -> None:
    """The tenant's event about one of its access requests (in the caller's transaction)."""
    site, person = access.site.code, access.person.get_username()
    emit(
        kind,
        access,
        tenant=access.tenant_id,
        name=f"{person} @ {site} {access.starts_at:%Y-%m-%d %H:%M}",
        data={
            "site": site,
            "person": person,
            "requested_by": access.requested_by.get_username(),
            "reason": access.reason,
            "justification": access.justification,
            "scope": access.scope,
            "office_country": access.office_country,
            "physical_country": access.physical_country,
            "break_glass": access.break_glass,
            "starts_at": timestamp(access.starts_at),
            "ends_at": timestamp(access.ends_at),
            "status": access.status,
            **more,
        },
    )


def _stated_location_problem(policy: lockbox.Policy, access: AccessRequest) -> str | None:
    """At filing, only what is stated is judged (the use is judged strictly, see ``covering``)."""
    relaxed = lockbox.Policy(
        physical_in_site_country=policy.physical_in_site_country and bool(access.physical_country),
        office_countries=policy.office_countries if access.office_country else frozenset(),
    )
    return lockbox.location_problem(
        relaxed, _site_country(access.site), access.office_country, access.physical_country
    )


def request_access(access: AccessRequest, ctx: ChangeContext) -> AccessRequest:
    """The provider asks for a person's access to a tenant's site. The tenant's policy decides
    what it needs: a ``never`` justification or a location the policy forbids is refused (403,
    nothing written); ``pre_approved`` is approved at once; otherwise it waits for its votes
    until ``answer_by``. Saved, audited and announced (``access_request.created``) at once."""
    access.full_clean()  # a malformed request is a 400 before the policy judges it
    policy = policy_for(access.tenant_id)
    need = lockbox.requirement(policy, access.justification, access.scope)
    if need.approval == lockbox.Approval.NEVER:
        raise Denied(
            f"the tenant's lockbox never admits {access.justification} for {access.scope}",
            code="justification_never",
            field="justification",
        )
    problem = _stated_location_problem(policy, access)
    if problem:
        raise Denied(problem, code="location_denied", field="physical_country")
    now = timezone.now()
    access.approval = need.approval
    access.approvals_needed = need.n if need.approval == lockbox.Approval.N_OF_M else 1
    access.approvers = sorted(need.approvers)
    access.answer_by = min(
        now + dt.timedelta(minutes=policy.answer_within_minutes), access.ends_at or now
    )
    if need.approval == lockbox.Approval.PRE_APPROVED:
        access.status, access.decided_at = AccessRequestStatus.APPROVED, now
    with transaction.atomic():
        access = save_object(access, ctx)
        _announce_access(EventKind.ACCESS_REQUEST_CREATED, access)
        if access.status == AccessRequestStatus.APPROVED:
            _transparency(access, ctx, "lockbox.approve", True, "pre-approved by the policy")
            _announce_access(EventKind.ACCESS_REQUEST_APPROVED, access, pre_approved=True)
    return access


def _locked_live(access: AccessRequest, ctx: ChangeContext) -> AccessRequest:
    """The request's row, locked, with a lapse the beat job has not written yet written now; a
    request no longer pending or approved is refused (409)."""
    access = (
        type(access)
        .objects.select_for_update(of=("self",))
        .select_related("site", "person")
        .get(pk=access.pk)
    )
    _settle(access, ctx)
    return access


def _refuse_final(access: AccessRequest, *, allowed: tuple[str, ...]) -> None:
    if access.status not in allowed:
        raise Conflict(
            f"access request #{access.pk} is already {access.status}",
            code="already_decided",
            field="status",
        )


def vote(
    access: AccessRequest, approve: bool, user: User, ctx: ChangeContext, note: str = ""
) -> AccessRequest:
    """One tenant admin's approval or rejection, counted against the requirement frozen on the
    request: a rejection rejects; the Nth approval (distinct named approvers for N of M)
    approves; N−1 leave it pending. Who and when is stored, audited and logged."""
    with transaction.atomic():
        access = _locked_live(access, ctx)
        _refuse_final(access, allowed=(AccessRequestStatus.PENDING,))
        need = lockbox.Requirement(
            lockbox.Approval(access.approval),
            access.approvals_needed,
            frozenset(access.approvers or ()),
        )
        if not need.may_vote(user.pk, _is_tenant_admin(user, access.tenant_id)):
            raise Denied(
                "only the tenant's admins named by the lockbox policy decide this request",
                code="not_an_approver",
                field="approver",
            )
        if user.pk in (access.person_id, access.requested_by_id):
            raise Denied(
                "the person who will act, or who asked, may not approve their own access",
                code="self_approval",
                field="approver",
            )
        if access.votes.filter(approver=user).exists():
            raise Conflict(
                f"{user.get_username()} has already decided access request #{access.pk}",
                code="already_voted",
                field="approver",
            )
        cast = save_object(
            AccessApproval(request=access, approver=user, approve=approve, note=note[:500]), ctx
        )
        _transparency(
            access,
            ctx,
            "lockbox.approve" if approve else "lockbox.reject",
            approve,
            f"{user.get_username()} {'approved' if approve else 'rejected'}"
            + (f": {note}" if note else ""),
        )
        outcome = lockbox.tally(need, list(access.votes.values_list("approver_id", "approve")))
        if outcome != lockbox.Status.PENDING:
            access.status = outcome.value
            access.decided_by, access.decided_at = user, cast.decided_at
            access = save_object(access, ctx)
            _announce_access(
                EventKind.ACCESS_REQUEST_DECIDED, access, decided_by=user.get_username()
            )
            if outcome == lockbox.Status.APPROVED:
                _announce_access(
                    EventKind.ACCESS_REQUEST_APPROVED,
                    access,
                    approvers=sorted(
                        access.votes.filter(approve=True).values_list(
                            "approver__username", flat=True
                        )
                    ),
                )
    return access


def decide_access(
    access: AccessRequest, approve: bool, user: User, ctx: ChangeContext
) -> AccessRequest:
    """The console's and the old API's yes/no: one vote (see ``vote``)."""
    return vote(access, approve, user, ctx)


def extend_access(
    access: AccessRequest, ends_at: dt.datetime, user: User, ctx: ChangeContext, reason: str = ""
) -> AccessRequest:
    """The provider asks to extend a live grant: a new request from the grant's end to
    ``ends_at``, same person, code, scope and location, judged by the policy again (pending
    until approved as the policy requires)."""
    with transaction.atomic():
        access = _locked_live(access, ctx)
        _refuse_final(access, allowed=(AccessRequestStatus.APPROVED,))
        if access.break_glass:
            raise Conflict(
                "break-glass cannot be extended; file a request",
                code="break_glass_fixed",
                field="ends_at",
            )
        if ends_at <= access.ends_at:
            raise Invalid("must be after the grant's end", code="invalid_window", field="ends_at")
        extension = AccessRequest(
            tenant_id=access.tenant_id,
            site=access.site,
            person=access.person,
            requested_by=user,
            reason=reason or f"extension of #{access.pk}: {access.reason}"[:500],
            justification=access.justification,
            scope=access.scope,
            office_country=access.office_country,
            physical_country=access.physical_country,
            starts_at=access.ends_at,
            ends_at=ends_at,
            extends=access,
        )
        return request_access(extension, ctx)


def revoke_access(
    access: AccessRequest, user: User, ctx: ChangeContext, note: str = ""
) -> AccessRequest:
    """The tenant ends a grant (or withdraws a pending request) at once, with its pending
    extensions: every later check of a step that needs the person fails from now on."""
    with transaction.atomic():
        access = _locked_live(access, ctx)
        _refuse_final(access, allowed=LIVE)
        if not _is_tenant_admin(user, access.tenant_id):
            raise Denied("only the tenant's admins revoke access", code="role", field="status")
        now = timezone.now()
        access.status = AccessRequestStatus.REVOKED
        access.closed_by, access.closed_at, access.close_note = user, now, note[:500]
        access = save_object(access, ctx)
        _transparency(access, ctx, "lockbox.revoke", False, f"revoked by {user.get_username()}")
        _announce_access(EventKind.ACCESS_REQUEST_REVOKED, access, revoked_by=user.get_username())
        ACCESS_ENDED.send(sender=AccessRequest, access=access)
        for extension in access.extensions.filter(status__in=LIVE):
            revoke_access(extension, user, ctx, note=f"the grant it extends (#{access.pk}) ended")
    return access


def end_access(access: AccessRequest, user: User, ctx: ChangeContext) -> AccessRequest:
    """The provider is done early: the grant ends now."""
    with transaction.atomic():
        access = _locked_live(access, ctx)
        _refuse_final(access, allowed=(AccessRequestStatus.APPROVED,))
        access.status = AccessRequestStatus.ENDED
        access.closed_by, access.closed_at = user, timezone.now()
        access = save_object(access, ctx)
        _transparency(access, ctx, "lockbox.end", False, f"ended by {user.get_username()}")
        ACCESS_ENDED.send(sender=AccessRequest, access=access)
    return access


def _refuse_stacked_break_glass(access: AccessRequest, now: dt.datetime) -> None:
    """Break-glass cannot be chained: while this person's earlier one at the site is still live
    or still waits for the tenant's review, another is refused (the rows are locked so two
    concurrent attempts cannot both pass)."""
    earlier = (
        AccessRequest.objects.select_for_update()
        .filter(person_id=access.person_id, site_id=access.site_id, break_glass=True)
        .exclude(pk=access.pk)
        .filter(
            models.Q(reviewed_at__isnull=True)
            | models.Q(status=AccessRequestStatus.APPROVED, ends_at__gt=now)
        )
        .order_by("pk")
        .first()
    )
    if earlier is not None:
        raise Conflict(
            f"break-glass #{earlier.pk} for this person at this site is still live or unreviewed;"
            " the tenant must review it before another",
            code="break_glass_pending_review",
            field="break_glass",
        )


def break_glass(access: AccessRequest, ctx: ChangeContext) -> AccessRequest:
    """The provider acts without approval: only for a justification the tenant's policy allows
    for emergencies, only from now for the policy's fixed minutes, only from an acceptable
    location. The tenant is told at once (``access.break_glass`` event, its webhooks) and the use
    stays flagged until one of its admins reviews it."""
    policy = policy_for(access.tenant_id)
    if not lockbox.break_glass_allowed(policy, access.justification):
        raise Denied(
            f"the tenant does not allow break-glass for {access.justification}",
            code="break_glass_not_allowed",
            field="justification",
        )
    now = timezone.now()
    access.starts_at, access.ends_at = now, now + dt.timedelta(minutes=policy.break_glass_minutes)
    access.full_clean()
    problem = lockbox.location_problem(
        policy, _site_country(access.site), access.office_country, access.physical_country
    )
    if problem:
        raise Denied(problem, code="location_denied", field="physical_country")
    access.status, access.break_glass = AccessRequestStatus.APPROVED, True
    access.approval, access.answer_by, access.decided_at = lockbox.Approval.PRE_APPROVED, now, now
    with transaction.atomic():
        _refuse_stacked_break_glass(access, now)
        access = save_object(access, ctx)
        _transparency(access, ctx, "lockbox.break_glass", True, access.reason)
        _announce_access(EventKind.ACCESS_BREAK_GLASS, access, needs_review=True)
    return access


def review_break_glass(
    access: AccessRequest, user: User, note: str, ctx: ChangeContext
) -> AccessRequest:
    """A tenant admin reviews a break-glass use (with a note); until then it is flagged."""
    with transaction.atomic():
        access = type(access).objects.select_for_update().get(pk=access.pk)
        if not access.break_glass:
            raise Invalid("not a break-glass use", code="not_break_glass", field="break_glass")
        if access.reviewed_at is not None:
            raise Conflict("already reviewed", code="already_reviewed", field="reviewed_at")
        if not _is_tenant_admin(user, access.tenant_id):
            raise Denied("only the tenant's admins review break-glass", code="role")
        if not note.strip():
            raise Invalid("a review needs a note", code="required", field="note")
        access.reviewed_by, access.reviewed_at, access.review_note = user, timezone.now(), note
        access = save_object(access, ctx)
        _transparency(access, ctx, "lockbox.review", True, f"reviewed: {note}"[:500])
    return access


def _settle(access: AccessRequest, ctx: ChangeContext, now: dt.datetime | None = None) -> bool:
    """Write the status ``live_status`` already reports (the caller holds the row). The beat job
    and every locked change use this, so both give the lazy read's answer."""
    live = access.live_status(now)
    if live == access.status:
        return False
    access.status = live.value
    if live == lockbox.Status.ENDED:
        access.closed_at = access.ends_at
    save_object(access, ctx)
    if live == lockbox.Status.EXPIRED:
        _announce_access(EventKind.ACCESS_REQUEST_EXPIRED, access)
    return True


def expire_due(ctx: ChangeContext, now: dt.datetime | None = None) -> int:
    """The beat job: pending requests past their deadline expire, grants past their window end.
    Returns how many changed."""
    now = now or timezone.now()
    due = AccessRequest.objects.filter(status=AccessRequestStatus.PENDING, answer_by__lte=now) | (
        AccessRequest.objects.filter(status__in=LIVE, ends_at__lte=now)
    )
    changed = 0
    for pk in due.values_list("pk", flat=True):
        with transaction.atomic():
            access = (
                AccessRequest.objects.select_for_update(of=("self",))
                .select_related("site", "person")
                .get(pk=pk)
            )
            changed += _settle(access, ctx, now)
    return changed


def _scope(remote: bool) -> str:
    return lockbox.Scope.REMOTE_HANDS if remote else lockbox.Scope.PHYSICAL_REPAIR


def covering_grant(
    person: User,
    site: SiteLike,
    *,
    scope: str = lockbox.Scope.PHYSICAL_REPAIR,
    at: dt.datetime | None = None,
    physical_country: str | None = None,
    office_country: str = "",
    grant_id: int | None = None,
) -> AccessRequest | None:
    """A grant that covers this person, site, scope and moment (approved, not revoked, not
    lapsed) and, when the location is given, a location the tenant's policy accepts."""
    at = at or timezone.now()
    grants = AccessRequest.objects.filter(
        person=person,
        site_id=site.pk,
        status=AccessRequestStatus.APPROVED,
        scope=scope,
        starts_at__lte=at,
        ends_at__gt=at,
    ).order_by("-break_glass", "ends_at")
    if grant_id is not None:
        grants = grants.filter(pk=grant_id)
    policy = policy_for(site.tenant_id) if physical_country is not None else None
    for grant in grants:
        if policy is not None and physical_country is not None:
            office = office_country or grant.office_country
            if lockbox.location_problem(policy, _site_country(site), office, physical_country):
                continue
        return grant
    return None


def approved_access(
    person: User,
    site: SiteLike,
    at: dt.datetime | None = None,
    *,
    scope: str = lockbox.Scope.PHYSICAL_REPAIR,
    physical_country: str | None = None,
) -> bool:
    """A valid grant covers this person, site, action and moment."""
    return (
        covering_grant(person, site, scope=scope, at=at, physical_country=physical_country)
        is not None
    )


def site_access(
    person: User,
    site: SiteLike,
    ctx: ChangeContext,
    *,
    from_country: str,
    remote: bool = False,
    grant_id: int | None = None,
    office_country: str = "",
    workflow_id: int | None = None,
    step: str = "",
) -> tuple[Decision, AccessRequest | None]:
    """The engine's decision on provider personnel acting on a site now, with the grant it
    rests on. A grant counts only when it covers the scope, the moment and the location the
    person is in (``from_country``). Every check that names or finds a grant is a use of it
    (``AccessUse``); a denial raises ``SovereigntyDenied`` after both are recorded."""
    scope = _scope(remote)
    grant = covering_grant(
        person,
        site,
        scope=scope,
        physical_country=from_country,
        office_country=office_country,
        grant_id=grant_id,
    )
    context = decision_context(site.pk)
    request = Request(
        Action.ACCESS_SITE,
        person_facts(person),
        context.site,
        from_country=from_country,
        remote=remote,
        approved=grant is not None,
    )
    decision = decide(
        request,
        tenant_id=site.tenant_id,
        ctx=ctx,
        site_id=site.pk,
        subject=Subject("site", str(site.pk), str(site)),
        policies=context.policies,
        raise_on_deny=False,
    )
    named = grant_id is not None and grant is None
    if grant is not None or named:
        reason = "; ".join(decision.reasons)
        if named:
            reason = f"grant #{grant_id} does not cover this use now" + (
                f"; {reason}" if reason else ""
            )
        if named:
            DecisionRecord.objects.create(
                tenant_id=site.tenant_id,
                actor_username=ctx.actor.username,
                action="lockbox.use",
                principal=person.get_username(),
                resource_type="access-request",
                resource_id=str(grant_id),
                resource_repr=f"{person.get_username()} @ {site}"[:200],
                site_id=site.pk,
                site_owner_id=site.tenant_id,
                allowed=False,
                rule_ids=[],
                reasons=[reason[:500]],
                request_id=ctx.request_id[:64],
            )
        named_id = (
            AccessRequest.objects.filter(pk=grant_id, person=person, site_id=site.pk)
            .values_list("pk", flat=True)
            .first()
            if grant_id is not None
            else None
        )
        AccessUse.objects.create(
            request_id=grant.pk if grant is not None else named_id,
            tenant_id=site.tenant_id,
            site_id=site.pk,
            person=person,
            scope=scope,
            office_country=office_country or (grant.office_country if grant else ""),
            physical_country=from_country,
            workflow_id=workflow_id,
            step=step,
            allowed=decision.allowed and not named,
            reason=reason[:500],
        )
    if not decision.allowed:
        raise SovereigntyDenied(decision)
    return decision, grant


def check_site_access(
    person: User, site: SiteLike, ctx: ChangeContext, *, from_country: str, remote: bool = False
) -> Decision:
    """Provider personnel acting on a site (technician dispatch, remote hands)."""
    return site_access(person, site, ctx, from_country=from_country, remote=remote)[0]
