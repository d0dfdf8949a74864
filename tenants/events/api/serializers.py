from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from tenants.events.choices import EventKindChoice
from tenants.events.models import Event

DATA_HELP = (
    "What happened, by kind (free-form; keys are only ever added). "
    "`fault.opened`, `fault.resolved`: `rule`, `severity` (`info`, `warning`, `critical`), "
    "`detail`, `site`, `server` (serial or null), `chip` (index or null), `opened_at`; "
    "resolved also `reason`, `cleared_at`. "
    "`server.isolated` (a leak powered a server off at once): `server`, `site`, `fault`, "
    "`rule`, `severity`, `detail`, `action`, `reset_type`, `command`, `isolated_at`. "
    "`workflow.created`: `workflow_kind`, `state`, `site`, `targets`, `reason`, `created_by`. "
    "`workflow.state_changed`: `from`, `to`, `workflow_kind`, `reason`. "
    "`workflow.escalated` (a step waited for a person past the workflow's "
    "`person_timeout_seconds`; it keeps waiting): `workflow_kind`, `site`, `server` (serial), "
    "`step`, `waited_seconds`, `limit_seconds`, `message`. "
    "`access_request.created`, `access_request.decided`, `access_request.approved`, "
    "`access_request.revoked`, `access_request.expired`, `access.break_glass`: `site`, "
    "`person`, `requested_by`, `reason`, `justification`, `scope` (`physical_repair`, "
    "`remote_hands`, `firmware`, `read_diagnostics`), "
    "`office_country`, `physical_country`, `break_glass`, `starts_at`, `ends_at`, `status`; "
    "decided also `decided_by`; approved (the policy's approvals are complete) also "
    "`approvers` (usernames) or `pre_approved` (`true`); revoked also `revoked_by`; expired "
    "(unanswered by its deadline or its window) nothing more; break_glass (the provider acted "
    "without approval, for an emergency code) also `needs_review` (`true` until the tenant "
    "reviews it). "
    "`key_store.disconnected`, `key_store.connected` (the customer pulled or restored its "
    "keys): `key_store` (its name), `state`, `changed_by`, `changed_at`, `sites` (codes), "
    "`assets` (names of the assets that depend on it). "
    "`fact_change.announced`, `fact_change.applied` (a provider-maintained fact of a site or "
    "technician that would flip a live decision of this tenant): `fact_change` (id), "
    "`subject_type`, `subject`, `before`, `after` (the facts), `effective_at`, `status`, "
    "`flips` (each `subject`, `id`, `name`, `becomes`: the decisions it turns). "
    "`trust_root.registered`, `trust_root.revoked` (a provider root for an origin this "
    "tenant's provenance rules cover): `root` (`provider:<name>`), `origin`, `key_id`, "
    "`rules_covering_origin` (ids); registered also `reaches_on_reactivation` (the rules it "
    "reaches only if the tenant re-activates them); revoked also `reason`. "
    "`maintenance_window.requested`, `maintenance_window.decided`: `site`, `name`, `weekdays`, "
    "`start_time`, `duration_minutes`, `status`; requested also `change` (`created` or "
    "`changed`), decided also `decided_by`. "
    "`webhook.created`, `webhook.updated`, `webhook.deleted`, `webhook.secret_rotated`: "
    "`destination` (`scheme://host:port/…`, never the path or query), `by`; created also "
    "`kinds`, `is_active`; updated also `changed` (field names), `is_active` and, when the URL "
    "changed, `previous_destination`. `webhook.disabled`: `reason`, `destination`, "
    "`consecutive_failures`, `delivery`, `last_status_code`."
)


@extend_schema_field({"type": "object", "additionalProperties": True, "description": DATA_HELP})
class EventDataField(serializers.JSONField):
    """The event's ``data``: an object whose keys depend on the kind."""


@extend_schema_serializer(component_name="LogEventSubject")
class EventSubjectSerializer(serializers.Serializer):
    type = serializers.CharField(
        source="subject_type", read_only=True, help_text="What it happened to, e.g. `workflow`."
    )
    id = serializers.CharField(
        source="subject_id", read_only=True, help_text="Its id, as text (`17`)."
    )
    name = serializers.CharField(
        source="subject_name", read_only=True, help_text="Its name when it happened."
    )


# "Event" in the schema is a workflow's history entry (provisioning); this is the log's.
@extend_schema_serializer(component_name="LogEvent")
class EventSerializer(serializers.ModelSerializer):
    """An event: the same JSON as the watch stream's ``data`` and a webhook's body
    (``tenants.events.services.event_payload``)."""

    id = serializers.IntegerField(
        source="sequence",
        read_only=True,
        help_text="The event's place in the log, in commit order: `after=` and "
        "`Last-Event-ID` take it.",
    )
    kind = serializers.ChoiceField(choices=EventKindChoice.choices, read_only=True)
    tenant = serializers.CharField(
        source="tenant.slug",
        read_only=True,
        allow_null=True,
        help_text="The tenant's slug; null for the provider's own events.",
    )
    subject = EventSubjectSerializer(source="*", read_only=True)
    data = EventDataField(read_only=True)

    class Meta:
        model = Event
        brief_fields = ["kind", "occurred_at"]
        fields = ["id", "kind", "occurred_at", "tenant", "subject", "data"]
        read_only_fields = fields
