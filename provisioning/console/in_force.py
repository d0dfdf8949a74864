"""What is in force now at a tenant's sites, for the sovereignty page: approved maintenance
windows and active access grants, each with whether the viewer may end it (the forms post to
``provisioning.console.transparency``). Imports no console view: the page's view imports this."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from provisioning.choices import WindowStatus
from provisioning.console.roles import tenant_admin_of
from provisioning.models import MaintenanceWindow
from tenants.access import Actor, scope_queryset
from tenants.sovereignty.core import lockbox
from tenants.sovereignty.models import AccessRequest, AccessRequestStatus


def sovereignty_lists(actor: Actor) -> dict[str, Any]:
    """For the sovereignty page: approved maintenance windows and access grants in force (an
    approved request whose window has not ended: by ``live_status``, as the lockbox decides)."""
    now = timezone.now()
    grants = [
        grant
        for grant in scope_queryset(
            AccessRequest.objects.select_related("site", "person"), actor, ("tenant",)
        )
        .filter(status=AccessRequestStatus.APPROVED)
        .order_by("ends_at", "pk")
        if grant.live_status(now) == lockbox.Status.APPROVED
    ]
    for grant in grants:
        grant.can_revoke = tenant_admin_of(actor, grant.tenant_id)
    approved = list(
        scope_queryset(MaintenanceWindow.objects.select_related("site"), actor, ("site__tenant",))
        .filter(status=WindowStatus.APPROVED)
        .order_by("site__code", "name")
    )
    for window in approved:
        window.can_withdraw = tenant_admin_of(actor, window.site.tenant_id)
    return {"grants": grants, "approved_windows": approved}
