"""Provider personnel on a tenant's site: the lockbox and the personnel rules."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from tenants.errors import Conflict
from tenants.events.kinds import EventKind, timestamp
from tenants.events.services import emit
from tenants.services.changes import ChangeContext, save_object
from tenants.sovereignty.core.model import (
    Action,
    Decision,
    Request,
)
from tenants.sovereignty.models import (
    AccessRequest,
    AccessRequestStatus,
)

if TYPE_CHECKING:
    from tenants.models import User
from tenants.sovereignty.services.decisions import (
    SiteLike,
    Subject,
    decide,
    decision_context,
    person_facts,
)


def approved_access(person: User, site: SiteLike, at: dt.datetime | None = None) -> bool:
    at = at or timezone.now()
    return AccessRequest.objects.filter(
        person=person,
        site_id=site.pk,
        status=AccessRequestStatus.APPROVED,
        starts_at__lte=at,
        ends_at__gt=at,
    ).exists()


def check_site_access(
    person: User, site: SiteLike, ctx: ChangeContext, *, from_country: str, remote: bool = False
) -> Decision:
    """Provider personnel acting on a site (technician dispatch, remote hands)."""
    context = decision_context(site.pk)
    request = Request(
        Action.ACCESS_SITE,
        person_facts(person),
        context.site,
        from_country=from_country,
        remote=remote,
        approved=approved_access(person, site),
    )
    return decide(
        request,
        tenant_id=site.tenant_id,
        ctx=ctx,
        site_id=site.pk,
        subject=Subject("site", str(site.pk), str(site)),
        policies=context.policies,
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
            "starts_at": timestamp(access.starts_at),
            "ends_at": timestamp(access.ends_at),
            "status": access.status,
            **more,
        },
    )


def request_access(access: AccessRequest, ctx: ChangeContext) -> AccessRequest:
    """The provider asks for a person's access to a tenant's site: saved (validated, audited)
    and announced to the tenant (``access_request.created``), in one transaction."""
    with transaction.atomic():
        access = save_object(access, ctx)
        _announce_access(EventKind.ACCESS_REQUEST_CREATED, access)
    return access


def decide_access(
    access: AccessRequest, approve: bool, user: User, ctx: ChangeContext
) -> AccessRequest:
    """A tenant-admin approves or rejects a pending access request (the lockbox). The caller
    checks the role; a request already decided is refused (409)."""
    with transaction.atomic():
        access = type(access).objects.select_for_update().get(pk=access.pk)
        if access.status != AccessRequestStatus.PENDING:
            raise Conflict(
                f"access request #{access.pk} is already {access.status}",
                code="already_decided",
                field="status",
            )
        access.status = AccessRequestStatus.APPROVED if approve else AccessRequestStatus.REJECTED
        access.decided_by, access.decided_at = user, timezone.now()
        access = save_object(access, ctx)
        _announce_access(EventKind.ACCESS_REQUEST_DECIDED, access, decided_by=user.get_username())
    return access
