"""The console's access-transparency pages: the log (filters, pages, a site column, repeat
counts, CSV/JSON export) and, on the sovereignty page, what is in force now (approved
maintenance windows, active access grants) with a way to end it.

The log reads through the API's serializer and filterset (``tenants.sovereignty.api``), so the
page, its export and ``GET /api/v1/sovereignty/decisions/`` show and redact the same things."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBase, QueryDict
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from provisioning import services
from provisioning.console.roles import tenant_admin_of
from provisioning.console.views import _actor, _ctx, _page, console_login
from provisioning.models import MaintenanceWindow
from tenants.access import Actor, scope_queryset
from tenants.errors import Invalid, required_text
from tenants.sovereignty import services as sovereignty
from tenants.sovereignty.api import transparency
from tenants.sovereignty.api.serializers import ACTIONS, DecisionRecordSerializer
from tenants.sovereignty.filtersets import DecisionRecordFilterSet
from tenants.sovereignty.models import AccessRequest, DecisionRecord

if TYPE_CHECKING:
    from tenants.models import User

PER_PAGE = 50
#: The filters the page's form offers (the API's names); the export takes the same.
FILTERS = ("action", "verdict", "site", "person", "since", "until")
#: As in the API: filters on what a site owner sees redacted match only its own records.
REDACTED_FILTERS = ("person",)


def _records(request: HttpRequest, actor: Actor) -> tuple[Any, dict[str, list[str]]]:
    """The caller's log filtered by the form: (queryset, errors by field)."""
    params = QueryDict(mutable=True)
    for name in FILTERS:
        value = request.GET.get(name, "").strip()
        if value:
            params[name] = value
    records = scope_queryset(DecisionRecord.objects.all(), actor, ("tenant_id", "site_owner_id"))
    visible = actor.visible_tenant_ids()
    if visible is not None and any(params.get(p) for p in REDACTED_FILTERS):
        records = records.filter(tenant_id__in=visible)
    filterset = DecisionRecordFilterSet(params, queryset=records, request=request)
    if not filterset.is_valid():
        errors = {field: [str(e) for e in errs] for field, errs in filterset.errors.items()}
        return DecisionRecord.objects.none(), errors
    return transparency.log_rows(filterset.qs), {}


@console_login
def access_log(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    records, errors = _records(request, actor)
    page = Paginator(records.order_by("-occurred_at", "-id"), PER_PAGE).get_page(
        request.GET.get("page")
    )
    serializer = DecisionRecordSerializer(context={"request": request})
    rows = [
        {
            **serializer.to_representation(record),
            "when": record.occurred_at,
            "until": record.repeat_until,
        }
        for record in page.object_list
    ]
    chosen = {name: request.GET.get(name, "").strip() for name in FILTERS}
    query = urlencode({k: v for k, v in chosen.items() if v})
    response = _page(
        request,
        "console/access_log.html",
        rows=rows,
        page=page,
        filters=chosen,
        errors=errors,
        actions=list(ACTIONS),
        query=query,
    )
    if errors:
        response.status_code = 400
    return response


@console_login
def access_log_export(request: HttpRequest) -> HttpResponseBase:
    """The filtered log as a file (``format``: csv or json), streamed, redacted as on the page."""
    actor = _actor(request)
    fmt = request.GET.get("format") or "csv"
    if fmt not in transparency.EXPORT_FORMATS:
        raise Invalid("format must be csv or json", code="invalid_choice", field="format")
    records, errors = _records(request, actor)
    if errors:
        field, reasons = next(iter(errors.items()))
        raise Invalid(f"{field}: {'; '.join(reasons)}", code="invalid", field=field)
    serializer = DecisionRecordSerializer(context={"request": request})
    return transparency.export_response(records.order_by("-occurred_at", "-id"), serializer, fmt)


# --- In force now: approved windows, active grants ------------------------------------------


@console_login
@require_POST
def revoke_grant(request: HttpRequest, pk: int) -> HttpResponse:
    """End an access grant now, with the reason the tenant's admin gives (kept as its note)."""
    actor = _actor(request)
    grant = get_object_or_404(
        scope_queryset(AccessRequest.objects.all(), actor, ("tenant",)), pk=pk
    )
    if not tenant_admin_of(actor, grant.tenant_id):
        raise PermissionDenied("Only the tenant's admins revoke access.")
    reason = required_text(request.POST.get("reason"))  # blank: the 400 page naming it
    user = cast("User", request.user)  # console_login: a signed-in person
    sovereignty.revoke_access(grant, user, _ctx(request), note=reason)
    messages.success(request, f"Access grant #{grant.pk}: revoked.")
    return redirect("console:sovereignty")


@console_login
@require_POST
def withdraw_window(request: HttpRequest, pk: int) -> HttpResponse:
    """Withdraw the approval of a maintenance window (it becomes rejected)."""
    actor = _actor(request)
    window = get_object_or_404(
        scope_queryset(MaintenanceWindow.objects.select_related("site"), actor, ("site__tenant",)),
        pk=pk,
    )
    if not tenant_admin_of(actor, window.site.tenant_id):
        raise PermissionDenied("Only the tenant's admins decide maintenance windows.")
    services.decide_window(window, False, _ctx(request))
    messages.success(request, f"Maintenance window “{window.name}”: approval withdrawn.")
    return redirect("console:sovereignty")
