"""Who and what caused a workflow's changes, and the audit events of steering one.

The engine acts as ``system``, but never for nobody: every change it makes for a workflow (a
server's firmware, its lifecycle, a chip) is recorded under ``workflow_ctx``, naming the
workflow as the cause, the person who started it and the request that created it. What people
do to a workflow (create, start, pause, resume, cancel, give input, report a part replaced) is
an audit event about the workflow (``record_workflow_action``) that names the servers it
targets, so a server's history (``factory.inventory.history``, which may not import this
package) finds it by the object type and the ``ultraservers`` list alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from provisioning.models import Workflow
from tenants.access import SYSTEM
from tenants.choices import AuditAction, AuditCause, AuditSource
from tenants.models import AuditEvent
from tenants.services import audit
from tenants.services.changes import ChangeContext

#: The audit ``object_type`` of a workflow, and the key of its targets in ``before``/``after``
#: (copied by ``factory.inventory.history`` as plain strings; a test keeps the copies equal).
WORKFLOW_OBJECT = "provisioning.workflow"
TARGETS_KEY = "ultraservers"


def starter(workflow: Workflow) -> str:
    """The person a workflow's changes are made for: who started it (or created it started);
    blank when the control plane itself did (a health sweep's maintain workflow)."""
    who = workflow.started_by or (workflow.created_by if workflow.started_at else "")
    return "" if who == SYSTEM.username else who


def workflow_ctx(workflow: Workflow) -> ChangeContext:
    """The engine's context for the changes it makes for ``workflow``: no query, so a batch
    of steps builds one per step for nothing."""
    return ChangeContext(
        actor=SYSTEM,
        source=AuditSource.SYSTEM,
        request_id=workflow.request_id,
        on_behalf_of=starter(workflow),
        cause_type=AuditCause.WORKFLOW,
        cause_id=str(workflow.pk),
    )


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def record_workflow_action(
    workflow: Workflow,
    verb: str,
    ctx: ChangeContext,
    *,
    to: str | None = None,
    reason: str = "",
    servers: Iterable[int] | None = None,
    **detail: Any,
) -> AuditEvent:
    """One audit event for a person's (or a job's) action on ``workflow``: ``verb`` (create,
    start, pause, resume, cancel, input, part-replaced), the state it moves to (``to``; call
    this before the move, while ``workflow.state`` is still the old one), the ``reason`` given,
    and ``detail`` (JSON-safe after conversion). ``servers``: the target ids the event is about
    (default: all of the workflow's), so each target's history lists it."""
    ids = sorted(
        servers
        if servers is not None
        else workflow.targets.values_list("ultraserver_id", flat=True)
    )
    creating = verb == "create"
    before = None if creating else {"state": workflow.state, TARGETS_KEY: ids}
    after = {
        **(audit.snapshot(workflow) if creating else {}),
        "state": to or workflow.state,
        "verb": verb,
        TARGETS_KEY: ids,
        **_json(detail),
    }
    return audit.record(
        actor=ctx.actor,
        action=AuditAction.CREATE if creating else AuditAction.UPDATE,
        instance=workflow,
        before=before,
        after=after,
        source=ctx.source,
        request_id=ctx.request_id,
        reason=reason,
        **ctx.attribution(),
    )
