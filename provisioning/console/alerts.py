"""The console's "Faults & alerts" page: what is wrong, how urgent, what the control plane did
about it and who has seen it; acknowledge, silence or resolve from the row. The table and the
header badge refresh themselves as small htmx fragments, a fixed handful of queries each.

Scoped like the rest of the console: another tenant's fault is a 404, on the page and on its
actions. The actions go through ``factory.telemetry.attention`` (audited, the note in the
AuditEvent); a refusal (no note, a resolved fault) is shown on its row."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast
from urllib.parse import urlencode

from django import forms
from django.core.exceptions import PermissionDenied
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from factory.telemetry import attention
from factory.telemetry.choices import FaultSeverity
from factory.telemetry.models import Fault
from factory.telemetry.models.faults import FaultQuerySet
from provisioning import attention as workflow_attention
from provisioning.console import freshness, selectors
from provisioning.console.views import _actor, _ctx, _page, console_login
from provisioning.models import Workflow
from tenants.access import Actor, scope_queryset
from tenants.choices import Role
from tenants.django_errors import REFUSALS, as_domain_error, refuse_on_form

#: Who may acknowledge, silence or resolve a fault (as who may report one in the API).
WRITE_ROLES = frozenset(
    {Role.PROVIDER_ADMIN, Role.PROVIDER_TECHNICIAN, Role.TENANT_ADMIN, Role.TENANT_OPERATOR}
)
STATES = {
    "open": "Open",
    "acknowledged": "Acknowledged",
    "silenced": "Silenced",
    "resolved": "Resolved recently",
}
#: "Resolved recently": within this long.
RECENT = dt.timedelta(hours=24)
SILENCE_HOURS = ((1, "1 h"), (4, "4 h"), (24, "24 h"))
MAX_ROWS = 200
#: Every few seconds; paused while a row's actions are open (typing a note is not lost).
REFRESH_SECONDS = 5
SEVERITY_RANK = Case(
    When(severity=FaultSeverity.CRITICAL, then=Value(0)),
    When(severity=FaultSeverity.WARNING, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


class NoteForm(forms.Form):
    """A person's words on a fault; a silence also says for how long."""

    note = forms.CharField(max_length=500, required=False, label="Note")
    hours = forms.TypedChoiceField(
        choices=SILENCE_HOURS, coerce=int, required=False, initial=4, label="For"
    )


def faults_for(actor: Actor) -> FaultQuerySet:
    scoped = scope_queryset(
        Fault.objects.select_related("site", "ultraserver__rack"), actor, ("site__tenant",)
    )
    return cast("FaultQuerySet", scoped)  # a filter of Fault's own queryset


def _filters(request: HttpRequest) -> dict[str, str]:
    """The page's filters from the query string, unknown values dropped."""
    source = request.GET if request.method == "GET" else request.POST
    severity = source.get("severity", "")
    state = source.get("state", "open")
    site = source.get("site", "")
    return {
        "severity": severity if severity in FaultSeverity.values else "",
        "state": state if state in STATES else "open",
        "site": site if site.isdigit() else "",
    }


def rows(actor: Actor, filters: dict[str, str], now: dt.datetime | None = None) -> dict:
    """The sections of the table: open faults by severity (critical first), newest first, and
    under them the silenced ones with until when; or only the state chosen. One query per
    section."""
    now = now or timezone.now()
    scoped = faults_for(actor)
    if filters["severity"]:
        scoped = scoped.filter(severity=filters["severity"])
    if filters["site"]:
        scoped = scoped.filter(site_id=int(filters["site"]))
    open_ = scoped.filter(cleared_at__isnull=True)
    loud = open_.loud(now)
    silenced = open_.silenced(now).order_by("silenced_until", "-id")
    by_urgency = loud.annotate(rank=SEVERITY_RANK).order_by("rank", "-opened_at", "-id")
    state = filters["state"]
    sections: list[tuple[str, QuerySet[Fault]]]
    if state == "open":
        sections = [("open", by_urgency), ("silenced", silenced)]
    elif state == "acknowledged":
        sections = [("acknowledged", by_urgency.filter(acknowledged_at__isnull=False))]
    elif state == "silenced":
        sections = [("silenced", silenced)]
    else:
        sections = [
            (
                "resolved",
                scoped.filter(cleared_at__gte=now - RECENT).order_by("-cleared_at", "-id"),
            )
        ]
    return {
        "sections": [
            {"state": name, "title": STATES[name], "rows": [_row(f, actor, now) for f in qs]}
            for name, qs in ((n, q[:MAX_ROWS]) for n, q in sections)
        ],
        "now": now,
    }


def _row(fault: Fault, actor: Actor, now: dt.datetime) -> dict[str, Any]:
    since = freshness.Age(fault.opened_at, dt.timedelta.max, now)
    action = fault.get_action_display()
    return {
        "fault": fault,
        "since": since,
        "action": f"{action} — {fault.action_detail}" if fault.action_detail else action,
        "silenced": fault.is_silenced(now),
        "silenced_utc": freshness.Age(fault.silenced_until, dt.timedelta.max, now).utc,
        "can_act": fault.cleared_at is None and actor.can_write(fault.site.tenant_id, WRITE_ROLES),
    }


#: Workflows listed under "Workflows needing action" (the most urgent first).
MAX_WORKFLOWS = 50


def workflows_needing_action(actor: Actor, now: dt.datetime | None = None) -> list[dict]:
    """The actor's workflows that wait for a person now (``provisioning.attention``), overdue
    ones first, then the longest waiting: an escalated wait is seen by the provider's staff
    here, not only by the tenant it was sent to. A fixed handful of queries."""
    now = now or timezone.now()
    workflows: list[Workflow] = list(
        selectors.workflows_for(actor)
        .filter(workflow_attention.needs_action_filter())
        .order_by("updated_at", "pk")[:MAX_WORKFLOWS]
    )
    needs = workflow_attention.needs_action_for(workflows, now)
    listed = [
        {"workflow": w, "need": needs[w.pk]} for w in workflows if needs.get(w.pk) is not None
    ]

    def urgency(row: dict) -> tuple[bool, dt.datetime]:
        need = row["need"]
        return (not need["detail"].get("overdue"), need["since"] or row["workflow"].updated_at)

    return sorted(listed, key=urgency)


def _query(filters: dict[str, str]) -> str:
    return urlencode({k: v for k, v in filters.items() if v and (k, v) != ("state", "open")})


def _table_context(request: HttpRequest, actor: Actor, **extra: Any) -> dict[str, Any]:
    filters = _filters(request)
    return {
        **rows(actor, filters),
        "filters": filters,
        "query": _query(filters),
        "silence_hours": SILENCE_HOURS,
        "refresh_seconds": REFRESH_SECONDS,
        **extra,
    }


@console_login
def alerts(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    context = _table_context(request, actor)
    if request.headers.get("HX-Request"):
        return render(request, "console/_alerts_table.html", context)
    return _page(
        request,
        "console/alerts.html",
        sites=selectors.sites_for(actor).order_by("code"),
        severities=FaultSeverity.choices,
        states=STATES,
        workflows=workflows_needing_action(actor),
        **context,
    )


@console_login
def badge(request: HttpRequest) -> HttpResponse:
    """The header badge alone, for its own refresh: a handful of queries."""
    actor = _actor(request)
    return render(
        request, "console/_alerts_badge.html", {"open_faults": selectors.open_fault_count(actor)}
    )


@console_login
@require_POST
def act(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    """Acknowledge, silence or resolve one fault, with a note. Done: back to the page with
    its filters. Refused: the page again, the reason on the fault's row (400)."""
    actor = _actor(request)
    fault = get_object_or_404(faults_for(actor), pk=pk)
    if verb not in ("acknowledge", "silence", "resolve"):
        raise Http404
    if not actor.can_write(fault.site.tenant_id, WRITE_ROLES):
        raise PermissionDenied("Your role may not act on faults here.")
    form = NoteForm(request.POST)
    status = 400
    if form.is_valid():
        note, ctx = form.cleaned_data["note"], _ctx(request)
        try:
            if verb == "acknowledge":
                attention.acknowledge(fault, note, ctx)
            elif verb == "silence":
                hours = form.cleaned_data["hours"] or 4
                until = timezone.now() + dt.timedelta(hours=hours)
                attention.silence(fault, until, note, ctx)
            else:
                attention.resolve(fault, note, ctx)
        except REFUSALS as refused:
            refuse_on_form(form, refused, {"until": "hours"})
            status = getattr(as_domain_error(refused), "status", 400)
        else:
            query = _query(_filters(request))
            return redirect(reverse("console:alerts") + (f"?{query}" if query else ""))
    context = _table_context(request, actor, refused={"pk": fault.pk, "verb": verb, "form": form})
    response = _page(
        request,
        "console/alerts.html",
        sites=selectors.sites_for(actor).order_by("code"),
        severities=FaultSeverity.choices,
        states=STATES,
        workflows=workflows_needing_action(actor),
        **context,
    )
    response.status_code = status
    return response
