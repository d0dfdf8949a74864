"""Provider-maintained facts the tenants' rules depend on: audited into every affected tenant's
log, and announced before a change that would flip a live decision takes effect.

The provider keeps a site's country, accreditations and air-gapped flag, and a technician's
nationality, residency and clearance: the party the rules constrain. So a change of them

- is audited (before/after) into the log of **every tenant it affects**: for a site, its tenant
  and the tenants with assets or access requests there; for a person, every tenant with an
  active personnel rule and every tenant with an open access request naming the person;
- is judged against the live decisions it could flip (each asset where it is now, each open or
  approved access request), under each affected tenant's own active rules, old facts against
  new. A change that flips nothing applies at once. One that flips something is held as a
  ``PendingFactChange`` with ``effective_at`` = now + ``SOVEREIGNTY_FACT_NOTICE`` (24 h unless
  set), a ``fact_change.announced`` event goes to each tenant whose decisions it flips, and the
  stored facts (which decisions read) stay as they are until then, or until every tenant told
  has acknowledged it (``acknowledge``), whichever comes first (``apply_due``).

The facts are held for everyone together, not per tenant: the decision path reads one row per
site and person. The other fields of the same save (a site's name, say) apply at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import models, transaction
from django.utils import timezone

from tenants.access import SYSTEM
from tenants.choices import AuditAction, Role
from tenants.errors import Conflict, Denied
from tenants.events.kinds import EventKind, timestamp
from tenants.events.services import emit
from tenants.services import audit
from tenants.services.changes import ChangeContext, save_object
from tenants.sovereignty.core import cedar
from tenants.sovereignty.core.model import Action, PersonFacts, Request, SiteFacts
from tenants.sovereignty.models import (
    AccessRequest,
    AccessRequestStatus,
    FactChangeNotice,
    FactChangeStatus,
    FactSubject,
    PendingFactChange,
    ProtectedAsset,
    RuleStatus,
    SovereigntyRule,
)
from tenants.sovereignty.services.assets import key_store_facts
from tenants.sovereignty.services.decisions import (
    SiteLike,
    active_policies,
    asset_facts,
    person_facts,
    site_facts,
)

if TYPE_CHECKING:
    from tenants.models import User

M = TypeVar("M", bound=models.Model)

SITE_FACTS = ("country", "accreditations", "air_gapped")
PERSON_FACTS = ("nationality", "residency", "clearance")
#: Access requests that stand: a decision taken on them could still be acted on.
OPEN_ACCESS = (AccessRequestStatus.PENDING, AccessRequestStatus.APPROVED)
_REPLICA_KINDS = frozenset({"replica", "backup"})


def notice_period() -> dt.timedelta:
    """How long before a flip-causing change takes effect (``SOVEREIGNTY_FACT_NOTICE``: a
    timedelta or seconds; 24 hours unless set)."""
    value = getattr(settings, "SOVEREIGNTY_FACT_NOTICE", dt.timedelta(hours=24))
    return value if isinstance(value, dt.timedelta) else dt.timedelta(seconds=float(value))


def _value(value: Any) -> Any:
    """A fact as stored and compared: country codes as strings, lists sorted."""
    value = getattr(value, "code", value)
    if isinstance(value, list):
        return sorted(v for v in value if isinstance(v, str))
    return value


def _facts(instance: models.Model, names: Iterable[str]) -> dict[str, Any]:
    return {name: _value(getattr(instance, name)) for name in names}


@dataclass(frozen=True)
class Flip:
    """A live decision that the change would turn: ``now`` → ``then`` (allow/deny)."""

    tenant_id: int
    subject: str
    id: str
    name: str
    now: bool
    then: bool

    def as_json(self) -> dict[str, Any]:
        """As the tenant reads it: what would now be ``denied`` (or ``allowed``)."""
        return {
            "subject": self.subject,
            "id": self.id,
            "name": self.name,
            "becomes": "allowed" if self.then else "denied",
        }


# --- Who is affected, and what would flip --------------------------------------------------


def _open_access(**filters: Any) -> models.QuerySet[AccessRequest]:
    return AccessRequest.objects.filter(
        status__in=OPEN_ACCESS, ends_at__gt=timezone.now(), **filters
    ).select_related("person", "site")


def _site_flips(old: SiteLike, new: SiteLike) -> tuple[set[int], list[Flip]]:
    tenants = {old.tenant_id}
    flips: list[Flip] = []
    old_facts, new_facts = site_facts(old), site_facts(new)
    for asset in ProtectedAsset.objects.filter(site_id=old.pk):
        tenants.add(asset.tenant_id)
        now = _asset_allowed(asset, old, old_facts)
        then = _asset_allowed(asset, new, new_facts)
        if now != then:
            flips.append(Flip(asset.tenant_id, "asset", str(asset.pk), asset.name, now, then))
    for access in _open_access(site_id=old.pk):
        tenants.add(access.tenant_id)
        person = person_facts(access.person)
        where = access.physical_country or old_facts.country
        now = _access_allowed(access, person, old_facts, where)
        then = _access_allowed(access, person, new_facts, where)
        if now != then:
            name = f"{person.id} @ {access.site.code}"
            flips.append(Flip(access.tenant_id, "access-request", str(access.pk), name, now, then))
    return tenants, flips


def _asset_allowed(asset: ProtectedAsset, site: SiteLike, facts: SiteFacts) -> bool:
    """Would the asset be allowed where it is, were the site's facts ``facts``? (Its owner's
    active rules; not recorded: nothing is being done.)"""
    action = Action.REPLICATE_ASSET if asset.kind in _REPLICA_KINDS else Action.PLACE_ASSET
    keys = key_store_facts(site, asset.tenant_id) if action == Action.PLACE_ASSET else {}
    request = Request(action, None, facts, asset=asset_facts(asset), **keys)
    return cedar.evaluate(active_policies(asset.tenant_id), request).allowed


def _access_allowed(
    access: AccessRequest, person: PersonFacts, site: SiteFacts, where: str
) -> bool:
    """Would the standing access request be allowed with these facts (its tenant's rules)?"""
    approved = access.status == AccessRequestStatus.APPROVED
    request = Request(Action.ACCESS_SITE, person, site, from_country=where, approved=approved)
    return cedar.evaluate(active_policies(access.tenant_id), request).allowed


def _person_flips(old: User, new: User) -> tuple[set[int], list[Flip]]:
    tenants = set(
        SovereigntyRule.objects.filter(kind="personnel", status=RuleStatus.ACTIVE).values_list(
            "tenant_id", flat=True
        )
    )
    flips: list[Flip] = []
    old_person, new_person = person_facts(old), person_facts(new)
    for access in _open_access(person_id=old.pk):
        tenants.add(access.tenant_id)
        site = site_facts(access.site)
        where = access.physical_country or site.country
        now = _access_allowed(access, old_person, site, where)
        then = _access_allowed(access, new_person, site, where)
        if now != then:
            name = f"{old_person.id} @ {access.site.code}"
            flips.append(Flip(access.tenant_id, "access-request", str(access.pk), name, now, then))
    return tenants, flips


# --- Saving a subject whose facts may change -------------------------------------------------


def save_site(
    site: M, ctx: ChangeContext, *, save: Callable[[M, ChangeContext], M] = save_object
) -> M:
    """Save a site (API, admin, console): its provider-maintained facts go through notice."""
    return _save_with_facts(FactSubject.SITE, site, SITE_FACTS, ctx, save)


def save_person(
    user: M, ctx: ChangeContext, *, save: Callable[[M, ChangeContext], M] | None = None
) -> M:
    """Save a person: nationality, residency and clearance go through notice. ``save`` (default:
    ``user.save()``) writes the row; the fact changes are audited here, per affected tenant."""
    return _save_with_facts(FactSubject.PERSON, user, PERSON_FACTS, ctx, save or _plain_save)


def _plain_save(instance: M, ctx: ChangeContext) -> M:
    instance.save()
    return instance


def _save_with_facts(
    kind: FactSubject,
    instance: M,
    names: tuple[str, ...],
    ctx: ChangeContext,
    save: Callable[[M, ChangeContext], M],
) -> M:
    if instance.pk is None:
        return save(instance, ctx)
    with transaction.atomic():
        lock = getattr(instance, "lock_for_change", None)
        if callable(lock):  # in save_object's order: its shared rows first, then the row
            lock()
        stored = type(instance)._base_manager.select_for_update().get(pk=instance.pk)
        before, after = _facts(stored, names), _facts(instance, names)
        changed = [name for name in names if before[name] != after[name]]
        if not changed:
            return save(instance, ctx)
        before = {name: before[name] for name in changed}
        after = {name: after[name] for name in changed}
        _refuse_if_pending(kind, stored, changed[0])
        flips_of = _site_flips if kind == FactSubject.SITE else _person_flips
        tenants, flips = flips_of(stored, instance)  # type: ignore[arg-type]
        period = notice_period()
        if not flips:
            saved = save(instance, ctx)
            if kind == FactSubject.SITE and save is save_object:
                tenants = tenants - {getattr(stored, "tenant_id", None)}  # save_object logged it
            _audit(kind, saved, before, after, tenants, ctx, status="applied")
            return saved
        # Hold the facts back; everything else in this save applies now.
        for name in changed:
            setattr(instance, name, getattr(stored, name))
        saved = save(instance, ctx)
        change = PendingFactChange.objects.create(
            subject_type=kind,
            subject_id=str(stored.pk),
            subject_repr=str(stored)[:200],
            before=before,
            after=after,
            requested_by=ctx.actor.username,
            request_id=ctx.request_id[:64],
            effective_at=timezone.now() + period,
        )
        _audit(kind, saved, before, after, tenants, ctx, status="pending", change=change)
        by_tenant: dict[int, list[Flip]] = {}
        for flip in flips:
            by_tenant.setdefault(flip.tenant_id, []).append(flip)
        for tenant_id, theirs in sorted(by_tenant.items()):
            notice = FactChangeNotice.objects.create(
                change=change, tenant_id=tenant_id, flips=[f.as_json() for f in theirs]
            )
            _announce(EventKind.FACT_CHANGE_ANNOUNCED, notice)
        if period <= dt.timedelta(0):
            _apply(change, ctx)
            return type(instance)._base_manager.get(pk=instance.pk)
        return saved


def _refuse_if_pending(kind: FactSubject, stored: models.Model, field: str) -> None:
    pending = PendingFactChange.objects.filter(
        subject_type=kind, subject_id=str(stored.pk), status=FactChangeStatus.PENDING
    ).first()
    if pending is not None:
        raise Conflict(
            f"a change of {stored}'s facts is already announced, effective "
            f"{timestamp(pending.effective_at)}; it must take effect first",
            code="fact_change_pending",
            field=field,
        )


def _audit(
    kind: FactSubject,
    instance: models.Model,
    before: dict[str, Any],
    after: dict[str, Any],
    tenants: Iterable[int],
    ctx: ChangeContext,
    *,
    status: str,
    change: PendingFactChange | None = None,
) -> None:
    """The fact change in each affected tenant's audit log, before/after, and whether it is
    applied or pending (and when it takes effect)."""
    note: dict[str, Any] = {"fact_change": status}
    if change is not None:
        note |= {"fact_change_id": change.pk, "effective_at": timestamp(change.effective_at)}
    for tenant_id in sorted(set(tenants)):
        audit.record(
            actor=ctx.actor,
            action=AuditAction.UPDATE,
            instance=instance,
            before=dict(before),
            after={**after, **note},
            source=ctx.source,
            request_id=ctx.request_id,
            tenant_id=tenant_id,
        )


def _announce(kind: EventKind, notice: FactChangeNotice) -> None:
    change = notice.change
    emit(
        kind,
        change,
        tenant=notice.tenant_id,
        name=f"{change.subject_type} {change.subject_repr}",
        data={
            "fact_change": change.pk,
            "subject_type": change.subject_type,
            "subject": change.subject_repr,
            "before": change.before,
            "after": change.after,
            "effective_at": timestamp(change.effective_at),
            "status": change.status,
            "flips": notice.flips,
        },
    )


# --- Taking effect -------------------------------------------------------------------------


def _subject(change: PendingFactChange) -> models.Model:
    if change.subject_type == FactSubject.PERSON:
        return get_user_model()._base_manager.select_for_update().get(pk=change.subject_id)
    site_model = ProtectedAsset._meta.get_field("site").related_model
    assert isinstance(site_model, type)  # a model class (the inventory app's Site)
    return site_model._base_manager.select_for_update().get(pk=change.subject_id)


def _apply(change: PendingFactChange, ctx: ChangeContext) -> PendingFactChange:
    """Write the announced facts to the stored row (audited, decisions read it from now on)."""
    with transaction.atomic():
        change = PendingFactChange.objects.select_for_update().get(pk=change.pk)
        if change.status != FactChangeStatus.PENDING:
            return change
        subject = _subject(change)
        for name, value in change.after.items():
            setattr(subject, name, value)
        tenants = {n.tenant_id for n in change.notices.all()}
        if change.subject_type == FactSubject.SITE:
            save_object(subject, ctx)  # in the site's tenant's log
            tenants.discard(getattr(subject, "tenant_id", None))
        else:
            subject.save()
        kind = FactSubject(change.subject_type)
        _audit(
            kind,
            subject,
            change.before,
            change.after,
            tenants,
            ctx,
            status="applied",
            change=change,
        )
        change.status, change.applied_at = FactChangeStatus.APPLIED, timezone.now()
        change.save(update_fields=["status", "applied_at"])
        for notice in change.notices.all():
            _announce(EventKind.FACT_CHANGE_APPLIED, notice)
    return change


def apply_due(now: dt.datetime | None = None, ctx: ChangeContext | None = None) -> list[int]:
    """Apply every pending change whose notice has run out (the periodic job). Returns their
    ids."""
    now = now or timezone.now()
    ctx = ctx or ChangeContext(SYSTEM)
    due = PendingFactChange.objects.filter(status=FactChangeStatus.PENDING, effective_at__lte=now)
    return [_apply(change, ctx).pk for change in due.order_by("effective_at", "pk")]


def acknowledge(notice: FactChangeNotice, ctx: ChangeContext) -> FactChangeNotice:
    """A tenant admin has seen the change: once every tenant told has, it applies at once. The
    provider cannot acknowledge for the tenant."""
    if ctx.actor.tenant_roles.get(notice.tenant_id) != Role.TENANT_ADMIN:
        raise Denied(
            "Only the tenant's admins acknowledge a fact change.",
            code="fact_change_customer_only",
            field="acknowledged_at",
        )
    with transaction.atomic():
        notice = FactChangeNotice.objects.select_for_update().get(pk=notice.pk)
        if notice.acknowledged_at is None:
            notice.acknowledged_at, notice.acknowledged_by = timezone.now(), ctx.actor.username
            notice.save(update_fields=["acknowledged_at", "acknowledged_by"])
            audit.record(
                actor=ctx.actor,
                action=AuditAction.UPDATE,
                instance=notice,
                before={"acknowledged_at": None},
                after={"acknowledged_at": timestamp(notice.acknowledged_at)},
                source=ctx.source,
                request_id=ctx.request_id,
            )
        change = notice.change
        if not change.notices.filter(acknowledged_at__isnull=True).exists():
            _apply(change, ctx)
    return FactChangeNotice.objects.select_related("change").get(pk=notice.pk)
