"""What touched a server: every audit event about it, its chips, and the workflows that
targeted it, oldest first.

This package may not import the workflow engine, so workflow events are found by the plain
strings the engine writes (``provisioning.attribution``): the object type
``provisioning.workflow``, whose object ids are the workflows that targeted the server (read
through the app registry, not an import), and the ``ultraservers`` list each such event
carries in ``after`` (a per-server action names only its servers).

A tenant sees only the events of its own chain (``tenant_id``), as in the audit log: a server
that moved to another tenant's rack shows its new owner nothing of the old owner's people,
reasons or requests.
"""

from __future__ import annotations

from django.apps import apps
from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast

from factory.inventory.models import Chip, UltraServer
from tenants.access import Actor, scope_queryset
from tenants.filters import FilterSet, UtcDateTimeFilter
from tenants.models import AuditEvent

SERVER_OBJECT = "inventory.ultraserver"
CHIP_OBJECT = "inventory.chip"
#: As ``provisioning.attribution`` writes them (WORKFLOW_OBJECT, TARGETS_KEY).
WORKFLOW_OBJECT = "provisioning.workflow"
TARGETS_KEY = "ultraservers"
#: Keys of a workflow event's before/after that say what it is about, not what changed.
NOT_CHANGES = frozenset({"verb", TARGETS_KEY})


def _named(server_id: int) -> Q:
    """The workflow event names ``server_id`` in its ``ultraservers`` list: a pattern on the
    list's JSON text, as both PostgreSQL and SQLite give it (JSON containment is refused on
    SQLite). Only a residual check: the rows are already those of the server's workflows."""
    return Q(**{f"after__{TARGETS_KEY}__regex": rf"(^|[^0-9]){int(server_id)}([^0-9]|$)"})


def server_history(server: UltraServer, actor: Actor) -> QuerySet[AuditEvent]:
    """One query, however many events: the server's own, its chips' and its workflows' (each
    by an indexed subquery on object type and id), as far as ``actor`` may see them."""
    chips = (
        Chip.objects.filter(ultraserver_id=server.pk)
        .annotate(key=Cast("pk", CharField()))
        .values("key")
    )
    targets = apps.get_model("provisioning", "WorkflowTarget")
    workflows = (
        targets.objects.filter(ultraserver_id=server.pk)
        .annotate(key=Cast("workflow_id", CharField()))
        .values("key")
    )
    events = AuditEvent.objects.filter(
        Q(object_type=SERVER_OBJECT, object_id=str(server.pk))
        | Q(object_type=CHIP_OBJECT, object_id__in=chips)
        | (Q(object_type=WORKFLOW_OBJECT, object_id__in=workflows) & _named(server.pk))
    )
    return scope_queryset(events, actor, ("tenant_id",)).order_by("occurred_at", "id")


def changes(event: AuditEvent) -> list[dict]:
    """The fields an event changed, each with its value before and after."""
    before, after = event.before or {}, event.after or {}
    return [
        {"field": name, "before": before.get(name), "after": after.get(name)}
        for name in event.changed_fields
        if name not in NOT_CHANGES
    ]


class ServerHistoryFilterSet(FilterSet):
    since = UtcDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    until = UtcDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["object_type", "cause_type", "cause_id", ("actor", "actor_username")]
