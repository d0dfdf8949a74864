"""The console's workflow page (``/console/workflows/<pk>/``): what it waits for, its servers'
step timelines, a dispatch form offering only the technicians the sovereignty rules allow now,
and pause / cancel with a required reason (the console's one steering path, resume too).

The live refresh replaces only what holds no <details> a person may have opened: the header
(its banner) and, swapped in by id out of band, each server's state, step timeline and
verified state; never the sections around them or their action forms (a reason half typed
stays). Each poll is a few queries whatever the number of servers, steps or technicians. The
action forms offered follow a server's state on the next load of the page."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from provisioning import attention, services
from provisioning.choices import ACTIVE_WORKFLOW_STATES, StepState, TargetState
from provisioning.console import selectors
from provisioning.console.roles import may_dispatch
from provisioning.console.views import _actor, _ctx, _page, console_login
from provisioning.models import Step, Workflow, WorkflowTarget
from tenants.access import Actor
from tenants.choices import Role
from tenants.errors import Invalid, required_text
from tenants.models import Membership
from tenants.sovereignty.core import cedar
from tenants.sovereignty.core.model import Action, Request
from tenants.sovereignty.services.access import covering_grant
from tenants.sovereignty.services.decisions import decision_context, person_facts

#: htmx's "stop polling" status (https://htmx.org/docs/#polling): a 2xx, so it is swapped too.
HTMX_STOP_POLLING = 286

#: Steering that says why (the reason form); ``resume`` is a plain POST.
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


def _header(workflow: Workflow, actor: Actor, targets: list[WorkflowTarget]) -> dict[str, Any]:
    """What the header (the live fragment) shows: state, need, times, versions, the steering
    buttons. ``targets`` with their servers (one query, whatever their number)."""
    need = attention.needs_action(workflow)
    started = workflow.started_at
    end = workflow.finished_at or timezone.now()
    return {
        "workflow": workflow,
        "need": need,
        "elapsed": _duration(end - started) if started else None,
        "expected": _expected(need, targets, (end - started) if started else None),
        "is_active": workflow.state in ACTIVE_WORKFLOW_STATES,
        "is_provider_admin": actor.is_provider_admin,
        "from_version": _from_versions(workflow, targets),
        "to_version": workflow.spec.get("firmware_version", ""),
    }


def _targets(workflow: Workflow) -> list[WorkflowTarget]:
    return list(workflow.targets.select_related("ultraserver").order_by("batch", "id"))


def _rows(request: HttpRequest, workflow: Workflow, targets: list[WorkflowTarget]) -> dict:
    """Each server's timeline, filtered by the server's state (``?state=``) and the steps'
    (``?step_state=``: only those steps, only servers with one). An unknown value filters
    nothing. Two queries whatever the number of servers: ``targets`` is read already."""
    state = _choice(request, "state", TargetState.values)
    step_state = _choice(request, "step_state", StepState.values)
    steps: dict[int | None, list[Step]] = defaultdict(list)
    chosen = workflow.steps.order_by("target_id", "seq")
    for step in chosen.filter(state=step_state) if step_state else chosen:
        steps[step.target_id].append(step)
    rows = [
        {"target": t, "steps": steps.get(t.pk, [])}
        for t in targets
        if (not state or t.state == state) and (not step_state or t.pk in steps)
    ]
    return {"rows": rows, "state": state, "step_state": step_state}


def _choice(request: HttpRequest, name: str, values: list[str]) -> str:
    value = request.GET.get(name, "")
    return value if value in values else ""


def _context(request: HttpRequest, workflow: Workflow, actor: Actor) -> dict[str, Any]:
    """The whole page: the header, each server's timeline, and the dispatch form for those
    who may dispatch (only then are the technicians evaluated)."""
    targets = _targets(workflow)
    dispatching = may_dispatch(actor)
    dispatch = (
        Step.objects.filter(workflow=workflow, name="dispatch", state=StepState.WAITING)
        .select_related("target__ultraserver")
        .first()
        if dispatching
        else None
    )
    allowed, refused = dispatch_candidates(workflow) if dispatch else ([], [])
    return {
        **_header(workflow, actor, targets),
        **_rows(request, workflow, targets),
        "states": TargetState.choices,
        "step_states": StepState.choices,
        "may_dispatch": dispatching,
        "dispatch": dispatch,
        "allowed": allowed,
        "refused": refused,
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


def _from_versions(workflow: Workflow, targets: list[WorkflowTarget]) -> str:
    """The versions the servers ran when the workflow was planned: each flash step's planned
    ``from_version`` (an upgrade records it; after the flash the server's own version is
    already the new one). A server without a flash step shows what it runs. One query."""
    planned = dict(
        Step.objects.filter(workflow=workflow, name="flash", input__has_key="from_version")
        .exclude(input__has_key="compensation")
        .values_list("target_id", "input__from_version")
    )
    versions = {planned.get(t.pk) or t.ultraserver.firmware_version for t in targets} - {"", None}
    return ", ".join(sorted(str(v) for v in versions))


@console_login
def workflow_detail(request: HttpRequest, pk: int) -> HttpResponse:
    actor = _actor(request)
    workflow = get_object_or_404(selectors.workflows_for(actor), pk=pk)
    if request.headers.get("HX-Request") and request.GET.get("part") == "timelines":
        # every server's state and timeline, swapped in by id; 286 tells htmx to stop polling
        # once the workflow has ended (this answer is its last word)
        rows = _rows(request, workflow, _targets(workflow))
        response = render(request, "console/_workflow_timelines.html", rows)
        if workflow.state not in ACTIVE_WORKFLOW_STATES:
            response.status_code = HTMX_STOP_POLLING
        return response
    if request.headers.get("HX-Request"):  # the live header alone
        return render(
            request, "console/_workflow_header.html", _header(workflow, actor, _targets(workflow))
        )
    return _page(request, "console/workflow.html", **_context(request, workflow, actor))


@console_login
def workflow_steer(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    """Pause or cancel: a small form asking why; posted with a reason, done. Resume: a POST.
    A refusal of the service (e.g. pausing a finished workflow) is the console's 409 page."""
    actor = _actor(request)
    workflow = get_object_or_404(selectors.workflows_for(actor), pk=pk)
    act = STEERED.get(verb)
    if act is None and verb != "resume":
        raise Http404
    if not actor.is_provider_admin:
        raise PermissionDenied("Only provider admins steer workflows.")
    if verb == "resume":
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        services.resume(workflow, _ctx(request))
        messages.success(request, f"Workflow #{workflow.pk}: resume done.")
        return redirect("console:workflow", pk=workflow.pk)
    assert act is not None
    error = ""
    if request.method == "POST":
        try:
            reason = required_text(request.POST.get("reason"))
        except Invalid as refused:  # shown on the form, which asks again
            error = "; ".join(refused.sentences())
        else:
            act(workflow, _ctx(request), reason=reason)
            messages.success(request, f"Workflow #{workflow.pk}: {verb} done.")
            return redirect("console:workflow", pk=workflow.pk)
    response = _page(
        request, "console/workflow_confirm.html", workflow=workflow, verb=verb, error=error
    )
    response.status_code = 400 if error else 200
    return response


@console_login
def workflow_dispatch(request: HttpRequest, pk: int) -> HttpResponse:
    """Dispatch one of the allowed technicians to the waiting dispatch step."""
    actor = _actor(request)
    workflow = get_object_or_404(selectors.workflows_for(actor), pk=pk)
    if request.method != "POST":
        raise Http404
    if not may_dispatch(actor):
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
