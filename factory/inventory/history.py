"""What touched a server: every audit event about it, its chips, and the workflows that
targeted it, oldest first.

This package may not import the workflow engine, so workflow events are found by the plain
strings the engine writes (``provisioning.attribution``): the object type
``provisioning.workflow`` and the ``ultraservers`` list each such event carries in ``after``.
"""

from __future__ import annotations

from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast

from factory.inventory.models import Chip, UltraServer
from tenants.filters import FilterSet, UtcDateTimeFilter
from tenants.models import AuditEvent

SERVER_OBJECT = "inventory.ultraserver"
CHIP_OBJECT = "inventory.chip"
#: As ``provisioning.attribution`` writes them (WORKFLOW_OBJECT, TARGETS_KEY).
WORKFLOW_OBJECT = "provisioning.workflow"
TARGETS_KEY = "ultraservers"
#: Keys of a workflow event's before/after that say what it is about, not what changed.
NOT_CHANGES = frozenset({"verb", TARGETS_KEY})


def server_history(server: UltraServer) -> QuerySet[AuditEvent]:
    """One query, however many events: the server's own, its chips' (by a subquery) and its
    workflows' (jsonb containment on ``after``)."""
    chips = (
        Chip.objects.filter(ultraserver_id=server.pk)
        .annotate(key=Cast("pk", CharField()))
        .values("key")
    )
    return AuditEvent.objects.filter(
        Q(object_type=SERVER_OBJECT, object_id=str(server.pk))
        | Q(object_type=CHIP_OBJECT, object_id__in=chips)
        | Q(object_type=WORKFLOW_OBJECT, **{f"after__{TARGETS_KEY}__contains": [server.pk]})
    ).order_by("occurred_at", "id")


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
