"""The answer of ``GET /ultraservers/{id}/history/``: when, who, why and what changed."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from factory.inventory.history import changes
from tenants.api.serializers import cause_type_field
from tenants.models import AuditEvent


class FieldChangeSerializer(serializers.Serializer):
    field = serializers.CharField()
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)


class ServerHistorySerializer(serializers.ModelSerializer):
    """One thing that touched the server. ``actor``: who did it (``system`` for the control
    plane); ``on_behalf_of``: the person who started the workflow (or job) that did it;
    ``cause_type``/``cause_id``: that workflow, job run, fault or agent; ``verb``: a workflow
    action (create, start, pause, resume, cancel, input, part-replaced) or the event's action."""

    actor = serializers.CharField(source="actor_username", read_only=True)
    cause_type = cause_type_field()
    verb = serializers.SerializerMethodField()
    changes = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "occurred_at",
            "action",
            "verb",
            "object_type",
            "object_id",
            "object_repr",
            "actor",
            "actor_id",
            "on_behalf_of",
            "source",
            "cause_type",
            "cause_id",
            "request_id",
            "reason",
            "changes",
        ]
        read_only_fields = fields

    def get_verb(self, event: AuditEvent) -> str:
        return str((event.after or {}).get("verb") or event.action)

    @extend_schema_field(FieldChangeSerializer(many=True))
    def get_changes(self, event: AuditEvent) -> list[dict]:
        return changes(event)
