"""Console pages. Thin: scope, call a selector or a service, render. Every object is looked up
through the caller's scope, so another tenant's site is a 404, exactly as in the API.

Views do not catch refusals: a refused action (a domain error, Http404, PermissionDenied)
propagates and is answered with the console's HTML error page of its status
(``factory.core.errors``; templates in ``console/errors/``). Forms show refusals inline."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from factory.inventory.models import Rack
from provisioning import attention, services
from provisioning.choices import WindowStatus, WorkflowKind
from provisioning.console import charts, in_force, selectors, topology
from provisioning.console.forms import ApiTokenForm, StartUpgradeForm
from provisioning.console.roles import tenant_admin_of as _tenant_admin_of
from provisioning.models import FirmwareRelease, MaintenanceWindow
from tenants.access import Actor, actor_for, scope_queryset
from tenants.choices import AuditSource
from tenants.django_errors import REFUSALS, refuse_on_form
from tenants.services.changes import ChangeContext
from tenants.services.tokens import issue_token, revoke_token, tokens_of
from tenants.sovereignty import services as sovereignty
from tenants.sovereignty.core import lockbox
from tenants.sovereignty.core.rules import describe
from tenants.sovereignty.models import (
    AccessRequest,
    AccessRequestStatus,
    RuleStatus,
    SovereigntyRule,
)

console_login = login_required(login_url="console:login")


def _actor(request: HttpRequest) -> Actor:
    actor = actor_for(request.user)
    if not actor.roles:
        raise PermissionDenied("You have no role in the AI factory.")
    return actor


def _ctx(request: HttpRequest) -> ChangeContext:
    return ChangeContext(
        actor=actor_for(request.user),
        source=AuditSource.CONSOLE,
        request_id=getattr(request, "request_id", ""),
    )


def _page(request, template: str, **context) -> HttpResponse:
    actor = _actor(request)
    context.setdefault("actor", actor)
    context["is_provider_admin"] = actor.is_provider_admin
    context["open_faults"] = selectors.open_fault_count(actor)
    return render(request, template, context)


# --- fleet, site, rack, UltraServer ----------------------------------------------------------


@console_login
def fleet(request):
    actor = _actor(request)
    rows = selectors.fleet(actor)
    if request.headers.get("HX-Request"):
        return render(request, "console/_fleet_table.html", {"rows": rows})
    return _page(request, "console/fleet.html", rows=rows)


@console_login
def site(request, pk: int):
    site = get_object_or_404(selectors.sites_for(_actor(request)), pk=pk)
    data = selectors.site_page(site)
    if request.headers.get("HX-Request"):
        return render(request, "console/_racks.html", {"site": site, **data})
    return _page(request, "console/site.html", site=site, **data)


@console_login
def rack(request, pk: int):
    actor = _actor(request)
    rack = get_object_or_404(
        scope_queryset(Rack.objects.select_related("site"), actor, ("site__tenant",)), pk=pk
    )
    data = selectors.rack_page(rack)
    return _page(request, "console/rack.html", site=rack.site, rack=rack, **data)


@console_login
def ultraserver(request, pk: int):
    server = get_object_or_404(selectors.servers_for(_actor(request)), pk=pk)
    metric = request.GET.get("color", "health")
    if metric not in selectors.HEAT_METRICS:
        metric = "health"
    range_name = charts.pick_range(request.GET.get("range"))
    if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "charts":
        # The range picker swaps the charts only: read nothing else.
        charts_only = selectors.server_charts(server, range_name)
        return render(
            request, "console/_charts.html", {"server": server, "metric": metric, **charts_only}
        )
    context = {"server": server, "metric": metric, "metrics": selectors.HEAT_METRICS}
    if request.headers.get("HX-Request"):  # the heatmap's refresh or colour switch: it only
        context.update(selectors.server_heatmap(server, metric))
        return render(request, "console/_heatmap.html", context)
    context.update(selectors.server_page(server, metric, range_name, actor=_actor(request)))
    return _page(request, "console/ultraserver.html", **context)


# --- topology, reservations, units (issue 16) -------------------------------------------------


@console_login
def site_topology(request: HttpRequest, pk: int) -> HttpResponse:
    actor = _actor(request)
    site = get_object_or_404(selectors.sites_for(actor), pk=pk)
    return _page(request, "console/topology.html", site=site, **topology.site_topology(site, actor))


@console_login
def reservations(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    actor = _actor(request)
    site = get_object_or_404(selectors.sites_for(actor), pk=pk) if pk is not None else None
    data = topology.reservation_timeline(actor, site)
    return _page(request, "console/reservations.html", site=site, **data)


@console_login
def units(request: HttpRequest) -> HttpResponse:
    return _page(request, "console/units.html", rows=topology.unit_rows(_actor(request)))


@console_login
def unit(request: HttpRequest, pk: int) -> HttpResponse:
    actor = _actor(request)
    unit = get_object_or_404(topology.units_for(actor), pk=pk)
    return _page(request, "console/unit.html", unit=unit, **topology.unit_page(unit, actor))


# --- workflows -------------------------------------------------------------------------------


@console_login
def workflows(request):
    actor = _actor(request)
    rows = selectors.workflow_rows(actor)
    needs = attention.needs_action_for([row["workflow"] for row in rows["active"]])
    for row in rows["active"]:  # what each waits for, read for the page at once
        row["need"] = needs[row["workflow"].pk]
    if request.headers.get("HX-Request"):
        context = {**rows, "actor": actor, "is_provider_admin": actor.is_provider_admin}
        return render(request, "console/_workflows.html", context)
    return _page(request, "console/workflows.html", **rows)


# Pause, resume and cancel: ``workflow_pages.workflow_steer`` (the one path, with its reason
# form).


@console_login
def start_upgrade(request):
    actor = _actor(request)
    if not actor.is_provider_admin:
        raise PermissionDenied("Only provider admins start rolling upgrades.")
    sites = selectors.sites_for(actor).order_by("code")
    site = None
    if request.GET.get("site") or request.POST.get("site"):
        site = get_object_or_404(sites, pk=request.GET.get("site") or request.POST.get("site"))
    servers = list(selectors.upgradable(site)) if site else []
    releases = (
        FirmwareRelease.objects.filter(model_id__in={s.model_id for s in servers})
        .select_related("model")
        .order_by("model__name", "-version")
    )
    posted = request.method == "POST" and site is not None
    form = StartUpgradeForm(request.POST if posted else None, releases=releases)
    if posted and form.is_valid():
        chosen = [s for s in servers if str(s.pk) in request.POST.getlist("servers")]
        try:  # none chosen: the service says so, as it does to the API and the admin
            workflow, _ = services.create_workflow(
                WorkflowKind.UPGRADE, chosen, _ctx(request), spec=form.spec()
            )
            messages.success(request, f"Rolling upgrade #{workflow.pk} started.")
            return redirect("console:workflows")
        except REFUSALS as refused:  # on the fields it names, the rest above the form
            form.refused(refused)
    return _page(
        request,
        "console/start_upgrade.html",
        sites=sites,
        site=site,
        servers=servers,
        form=form,
        errors=form.non_field_errors(),
    )


# --- sovereignty -----------------------------------------------------------------------------


def _approval_progress(access: AccessRequest) -> tuple[int, int]:
    """(k, N): the approvals a request has and needs. Only eligible admins can vote (``vote``
    refuses the others), so every stored yes counts."""
    have = sum(1 for v in access.votes.all() if v.approve)
    return have, max(access.approvals_needed, 1)


def _pending_access(actor: Actor) -> list[AccessRequest]:
    """The requests still waiting for an answer now: by the lockbox's own ``live_status``, so a
    request past its deadline the beat job has not written yet is not offered for a vote."""
    now = timezone.now()
    rows = (
        scope_queryset(
            AccessRequest.objects.select_related("site", "person", "requested_by"),
            actor,
            ("tenant",),
        )
        .filter(status=AccessRequestStatus.PENDING)
        .prefetch_related("votes")
        .order_by("starts_at")
    )
    pending = []
    for item in rows:
        if item.live_status(now) != lockbox.Status.PENDING:
            continue
        item.approvals, item.approvals_needed_now = _approval_progress(item)
        item.voted = any(v.approver_id == actor.user_id for v in item.votes.all())
        need = lockbox.Requirement(
            lockbox.Approval(item.approval), item.approvals_needed, frozenset(item.approvers or ())
        )
        item.can_decide = (
            _tenant_admin_of(actor, item.tenant_id)
            and need.may_vote(actor.user_id or 0, True)
            and not item.voted
        )
        pending.append(item)
    return pending


@console_login
def sovereignty_home(request):
    actor = _actor(request)
    rules = list(
        scope_queryset(SovereigntyRule.objects.select_related("tenant"), actor, ("tenant",))
        .exclude(status=RuleStatus.RETIRED)
        .order_by("tenant__name", "status", "name")
    )
    for rule in rules:
        try:
            rule.plain = describe(rule.kind, rule.params)
        except (KeyError, TypeError, ValueError):
            rule.plain = "(parameters cannot be described)"
    access = _pending_access(actor)
    windows = list(
        scope_queryset(MaintenanceWindow.objects.select_related("site"), actor, ("site__tenant",))
        .filter(status=WindowStatus.PROPOSED)
        .order_by("site__code", "name")
    )
    for window in windows:
        window.can_decide = _tenant_admin_of(actor, window.site.tenant_id)
    return _page(
        request,
        "console/sovereignty.html",
        rules=rules,
        access=access,
        windows=windows,
        **in_force.sovereignty_lists(actor),
    )


@console_login
def what_if(request, pk: int):
    actor = _actor(request)
    rule = get_object_or_404(
        scope_queryset(SovereigntyRule.objects.all(), actor, ("tenant",)), pk=pk
    )
    if rule.status != RuleStatus.DRAFT:
        raise Http404("Only a draft rule has a what-if.")
    result = sovereignty.what_if(rule)
    return _page(
        request,
        "console/what_if.html",
        rule=rule,
        plain=describe(rule.kind, rule.params),
        result=result,
    )


# The access-transparency log: provisioning/console/transparency.py.


@console_login
@require_POST
def decide_access(request, pk: int, verb: str):
    actor = _actor(request)
    access = get_object_or_404(
        scope_queryset(AccessRequest.objects.all(), actor, ("tenant",)), pk=pk
    )
    if verb not in ("approve", "reject"):
        raise Http404
    if not _tenant_admin_of(actor, access.tenant_id):
        raise PermissionDenied("Only the tenant's admins decide access requests.")
    access = sovereignty.decide_access(access, verb == "approve", request.user, _ctx(request))
    if access.status == AccessRequestStatus.PENDING:
        have, need = _approval_progress(access)
        messages.success(
            request,
            f"Access request #{access.pk}: your approval is recorded; {have} of {need} "
            "approvals, still pending.",
        )
    else:
        messages.success(request, f"Access request #{access.pk}: {access.status}.")
    return redirect("console:sovereignty")


@console_login
@require_POST
def decide_window(request, pk: int, verb: str):
    actor = _actor(request)
    window = get_object_or_404(
        scope_queryset(MaintenanceWindow.objects.select_related("site"), actor, ("site__tenant",)),
        pk=pk,
    )
    if verb not in ("approve", "reject"):
        raise Http404
    if not _tenant_admin_of(actor, window.site.tenant_id):
        raise PermissionDenied("Only the tenant's admins decide maintenance windows.")
    services.decide_window(window, verb == "approve", _ctx(request))
    messages.success(request, f"Maintenance window “{window.name}”: {verb}d.")
    return redirect("console:sovereignty")


# --- API tokens: each person their own -------------------------------------------------------


@console_login
@require_http_methods(["GET", "HEAD", "POST"])
def api_tokens(request):
    """List, create: the clear token is in this one response (never stored, never cached)."""
    _actor(request)  # a person with no role has no use for a token: 403
    form = ApiTokenForm(request.POST if request.method == "POST" else None)
    issued = None
    if form.is_bound and form.is_valid():
        try:
            token, clear = issue_token(request.user, _ctx(request), **form.cleaned_data)
        except REFUSALS as refused:  # on the field it names
            refuse_on_form(form, refused)
        else:
            issued = {"token": token, "clear": clear}
            form = ApiTokenForm()
    response = _page(
        request,
        "console/tokens.html",
        form=form,
        issued=issued,
        tokens=list(tokens_of(request.user)),
    )
    if issued:
        response["Cache-Control"] = "no-store"
    return response


@console_login
@require_http_methods(["GET", "HEAD", "POST"])
def revoke_api_token(request, pk: int):
    """GET asks to confirm; POST revokes. Another person's token is not there (404)."""
    _actor(request)
    token = get_object_or_404(tokens_of(request.user), pk=pk)
    if request.method == "POST":
        if token.revoked_at is not None:
            messages.info(request, f"Token “{token.name}” was already revoked.")
        else:
            revoke_token(token, _ctx(request))
            messages.success(request, f"Token “{token.name}” ({token.prefix}…) revoked.")
        return redirect("console:tokens")
    return _page(request, "console/token_revoke.html", token=token)
