"""The console's operator actions on a workflow: retry, skip or force-release one server, and
abort the batch in flight. Small POST forms with a required reason (``_target_actions.html``,
``_batch_abort.html``); the services decide (``provisioning.operator_actions``), and a refusal
propagates to the console's error page of its status, as everywhere in the console."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from provisioning import operator_actions
from provisioning.console import selectors
from provisioning.console.views import _actor, _ctx, console_login
from provisioning.models import Workflow
from tenants.errors import required_text

TARGET_ACTIONS = {
    "retry": operator_actions.retry_target,
    "skip": operator_actions.skip_target,
    "force-release": operator_actions.force_release,
}


def _workflow(request: HttpRequest, pk: int) -> Workflow:
    """The caller's workflow (another tenant's is a 404); only provider admins act on it."""
    actor = _actor(request)
    workflow = get_object_or_404(selectors.workflows_for(actor), pk=pk)
    if not actor.is_provider_admin:
        raise PermissionDenied("Only provider admins act on a workflow's servers.")
    return workflow


def _back(workflow: Workflow, anchor: str = "") -> HttpResponse:
    return redirect(reverse("console:workflow", args=[workflow.pk]) + anchor)


@console_login
@require_POST
def target_action(request: HttpRequest, pk: int, target_id: int, verb: str) -> HttpResponse:
    """Retry, skip or force-release one server of the workflow, with the reason given."""
    act = TARGET_ACTIONS.get(verb)
    if act is None:
        raise Http404
    workflow = _workflow(request, pk)
    reason = required_text(request.POST.get("reason"))  # blank: the 400 page naming it
    target = act(workflow, target_id, reason, _ctx(request))
    messages.success(request, f"{target.ultraserver.serial}: {verb} done ({target.state}).")
    return _back(workflow, f"#target-{target_id}")


@console_login
@require_POST
def abort_batch(request: HttpRequest, pk: int) -> HttpResponse:
    """Stop the batch in flight and roll back the servers whose firmware it changed."""
    workflow = _workflow(request, pk)
    reason = required_text(request.POST.get("reason"))  # blank: the 400 page naming it
    workflow = operator_actions.abort_batch(workflow, reason, _ctx(request))
    messages.success(request, f"Workflow #{workflow.pk}: batch aborted; {workflow.state}.")
    return _back(workflow)
