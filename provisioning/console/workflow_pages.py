"""The console's workflow page (``/console/workflows/<pk>/``): what it waits for, its servers'
step timelines, a dispatch form offering only the technicians the sovereignty rules allow now,
and pause / cancel with a required reason.

The live refresh replaces only the fragments without a <details> a person may have opened (the
header and its banner); the timelines are refreshed by reloading the page on demand."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from provisioning import attention, services
from provisioning.choices import ACTIVE_WORKFLOW_STATES, StepState, TargetState
from provisioning.console import selectors
from provisioning.console.views import _actor, _ctx, _page, console_login
from provisioning.models import Step, Workflow, WorkflowTarget
from tenants.choices import Role
from tenants.models import Membership
from tenants.sovereignty.core import cedar
from tenants.sovereignty.core.model import Action, Request
from tenants.sovereignty.services.access import covering_grant
from tenants.sovereignty.services.decisions import decision_context, person_facts

STEERED = {"pause": services.pause, "cancel": services.cancel}


def dispatch_candidates(workflow: Workflow, from_country: str = "") -> tuple[list, list]:
    """The provider's technicians, split: those the sovereignty engine would let act on the
    workflow's site now, and ``(person, why not)`` for the others. The same evaluation as the
    dispatch step's (``sovereignty.site_access``: the covering grant, then the tenant's
    rules), but not recorded: nobody was dispatched yet."""
    site = workflow.site
    country = from_country or _country(workflow)
    context = decision_context(site.pk)
    people = (
        get_user_model()
        .objects.filter(
            pk__in=Membership.objects.filter(role=Role.PROVIDER_TECHNICIAN).values("user_id")
        )
        .order_by("username")
    )
    allowed, refused = [], []
    for person in people:
        grant = covering_grant(person, site, physical_country=country)
        request = Request(
            Action.ACCESS_SITE,
            person_facts(person),
            context.site,
            from_country=country,
            remote=False,
            approved=grant is not None,
        )
        decision = cedar.evaluate(context.policies, request)
        if decision.allowed:
            allowed.append(person)
        else:
            rules = ", ".join(decision.rule_ids) or "default deny"
            refused.append((person, f"{'; '.join(decision.reasons) or 'denied'} ({rules})"))
    return allowed, refused


def _country(workflow: Workflow) -> str:
    """Where a dispatched technician acts from: on site, the site's country."""
    country = workflow.site.country
    return str(getattr(country, "code", country) or "")


def _context(request: HttpRequest, workflow: Workflow) -> dict[str, Any]:
    targets = list(workflow.targets.select_related("ultraserver").order_by("batch", "id"))
    state = request.GET.get("state", "")
    if state and state not in TargetState.values:
        state = ""
    steps: dict[int | None, list[Step]] = defaultdict(list)
    for step in workflow.steps.order_by("target_id", "seq"):
        steps[step.target_id].append(step)
    rows = [
        {"target": t, "steps": steps.get(t.pk, [])}
        for t in targets
        if not state or t.state == state
    ]
    need = attention.needs_action(workflow)
    dispatch = (
        Step.objects.filter(workflow=workflow, name="dispatch", state=StepState.WAITING)
        .select_related("target__ultraserver")
        .first()
    )
    allowed, refused = dispatch_candidates(workflow) if dispatch else ([], [])
    now = timezone.now()
    started = workflow.started_at
    end = workflow.finished_at or now
    return {
        "workflow": workflow,
        "need": need,
        "rows": rows,
        "states": TargetState.choices,
        "state": state,
        "dispatch": dispatch,
        "allowed": allowed,
        "refused": refused,
        "elapsed": _duration(end - started) if started else None,
        "expected": _expected(need, targets, (end - started) if started else None),
        "is_active": workflow.state in ACTIVE_WORKFLOW_STATES,
        "from_version": _from_versions(targets),
        "to_version": workflow.spec.get("firmware_version", ""),
    }


def _duration(delta: dt.timedelta) -> str:
    """``2 h 05 min`` (whole minutes; seconds under a minute)."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _expected(
    need: attention.NeedsAction | None, targets: list[WorkflowTarget], elapsed: dt.timedelta | None
) -> str:
    """How long it should take: a wait for a person has its limit; otherwise the pace so far
    (servers finished per elapsed time) carried over to the servers left."""
    if need is not None and "limit_seconds" in need["detail"]:
        limit = dt.timedelta(seconds=need["detail"]["limit_seconds"])
        return f"a person within {_duration(limit)} of the wait starting (then escalated)"
    finished = sum(t.finished_at is not None for t in targets)
    if elapsed is None or not finished or finished == len(targets):
        return ""
    return f"about {_duration(elapsed / finished * (len(targets) - finished))} more at this pace"


def _from_versions(targets: list[WorkflowTarget]) -> str:
    versions = sorted(
        {
            (t.verified_state or {}).get("firmware_version") or t.ultraserver.firmware_version
            for t in targets
        }
        - {""}
    )
    return ", ".join(versions)


@console_login
def workflow_detail(request: HttpRequest, pk: int) -> HttpResponse:
    workflow = get_object_or_404(selectors.workflows_for(_actor(request)), pk=pk)
    context = _context(request, workflow)
    if request.headers.get("HX-Request"):
        actor = _actor(request)
        context["is_provider_admin"] = actor.is_provider_admin
        return render(request, "console/_workflow_header.html", context)
    return _page(request, "console/workflow.html", **context)


@console_login
def workflow_steer(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    """Pause or cancel: a small form asking why; posted with a reason, done."""
    actor = _actor(request)
    workflow = get_object_or_404(selectors.workflows_for(actor), pk=pk)
    act = STEERED.get(verb)
    if act is None:
        raise Http404
    if not actor.is_provider_admin:
        raise PermissionDenied("Only provider admins steer workflows.")
    reason = (request.POST.get("reason") or "").strip()
    if request.method == "POST" and reason:
        act(workflow, _ctx(request), reason=reason)
        messages.success(request, f"Workflow #{workflow.pk}: {verb} done.")
        return redirect("console:workflow", pk=workflow.pk)
    status = 400 if request.method == "POST" else 200
    response = _page(
        request,
        "console/workflow_confirm.html",
        workflow=workflow,
        verb=verb,
        error="Say why." if request.method == "POST" else "",
    )
    response.status_code = status
    return response


@console_login
def workflow_dispatch(request: HttpRequest, pk: int) -> HttpResponse:
    """Dispatch one of the allowed technicians to the waiting dispatch step."""
    actor = _actor(request)
    workflow = get_object_or_404(selectors.workflows_for(actor), pk=pk)
    if request.method != "POST":
        raise Http404
    if not (actor.is_provider_admin or actor.provider_role == Role.PROVIDER_TECHNICIAN):
        raise PermissionDenied("Only provider staff dispatch technicians.")
    allowed, _ = dispatch_candidates(workflow)
    chosen = next((p for p in allowed if str(p.pk) == request.POST.get("technician")), None)
    if chosen is None:
        messages.error(request, "Choose one of the technicians offered.")
        return redirect("console:workflow", pk=workflow.pk)
    server = request.POST.get("ultraserver")
    services.provide_input(
        workflow,
        "dispatch",
        int(server) if server and server.isdigit() else None,
        {"technician": chosen.pk, "from_country": _country(workflow)},
        _ctx(request),
    )
    messages.success(request, f"{chosen.username} dispatched to workflow #{workflow.pk}.")
    return redirect("console:workflow", pk=workflow.pk)
