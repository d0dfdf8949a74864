from __future__ import annotations

from typing import Any, cast

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from factory.inventory.models import Rack, Site, UltraServer
from factory.telemetry.choices import FaultAction, FaultSeverity
from provisioning.attention import NeedsAction, needs_action, needs_action_for
from provisioning.choices import WorkflowKind
from provisioning.models import (
    CapacityFloor,
    FirmwareRelease,
    JobRun,
    MaintenanceWindow,
    Notification,
    PartReplacement,
    Step,
    Workflow,
    WorkflowEvent,
    WorkflowTarget,
)
from provisioning.runner import STEP_FIELDS
from tenants.api.base import ScopedPrimaryKeyRelatedField

SITE_TENANT = ("tenant",)


class TargetSelectionSerializer(serializers.Serializer):
    """Which UltraServers: a list, or a filter (site, with optional racks and models)."""

    ultraservers = ScopedPrimaryKeyRelatedField(
        queryset=UltraServer.objects.all(),
        tenant_fields=("rack__site__tenant", "tenant"),
        many=True,
        required=False,
    )
    site = ScopedPrimaryKeyRelatedField(
        queryset=Site.objects.all(), tenant_fields=SITE_TENANT, required=False
    )
    racks = ScopedPrimaryKeyRelatedField(
        queryset=Rack.objects.all(), tenant_fields=("site__tenant",), many=True, required=False
    )
    models = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False)

    def validate(self, attrs):
        if not attrs.get("ultraservers") and not attrs.get("site") and not attrs.get("racks"):
            raise serializers.ValidationError(
                "name UltraServers, or a site (optionally with racks and models)",
                code="empty_selection",
            )
        return attrs

    @staticmethod
    def resolve(data: dict) -> list:
        servers = UltraServer.objects.select_related("rack__site", "model")
        if data.get("ultraservers"):
            servers = servers.filter(pk__in=[s.pk for s in data["ultraservers"]])
        if data.get("site"):
            servers = servers.filter(rack__site=data["site"])
        if data.get("racks"):
            servers = servers.filter(rack__in=data["racks"])
        if data.get("models"):
            servers = servers.filter(model_id__in=data["models"])
        return list(servers.exclude(lifecycle_state="decommissioned").order_by("pk"))


class WorkflowSpecField(serializers.JSONField):
    """The kind's parameters, passed through as sent: ``services.create_workflow`` checks them
    against the kind's declaration (``WorkflowDefinition.spec_params``), the one place that
    does, and names each field at fault (``spec.batch_size``)."""


class WorkflowSpecFieldSchema(OpenApiSerializerFieldExtension):
    """The spec's schema, generated from the declarations of every kind."""

    target_class = WorkflowSpecField

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        from provisioning.workflows import spec_schema

        schema = spec_schema()
        schema["description"] = (
            "Parameters; which ones apply depends on the kind (each says). Unknown ones are "
            "refused; defaults are filled in and stored."
        )
        return schema


class WorkflowCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=WorkflowKind.choices)
    targets = TargetSelectionSerializer()
    spec = WorkflowSpecField(required=False)
    idempotency_key = serializers.CharField(max_length=128, required=False, allow_blank=False)
    reason = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class NeedsActionDetailSerializer(serializers.Serializer):
    """The facts behind a ``needs_action`` (``provisioning.attention``): each kind sets only
    those that apply to it, so every field is optional."""

    step = serializers.CharField(required=False, help_text="The step waiting for a person.")
    step_id = serializers.IntegerField(required=False)
    serial = serializers.CharField(required=False, help_text="The server it waits on.")
    servers_waiting = serializers.IntegerField(required=False)
    overdue = serializers.BooleanField(required=False, help_text="Past the person timeout.")
    escalated_at = serializers.CharField(required=False, allow_null=True)
    limit_seconds = serializers.IntegerField(required=False)
    access_requests = serializers.ListField(child=serializers.IntegerField(), required=False)
    denied = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Technicians refused so far."
    )
    last_denial = serializers.CharField(required=False, allow_blank=True)
    access_ended = serializers.CharField(required=False, allow_blank=True)
    failed_serials = serializers.ListField(child=serializers.CharField(), required=False)
    time_zone = serializers.CharField(required=False, help_text="The site's IANA time zone.")
    proposed_windows = serializers.ListField(child=serializers.CharField(), required=False)
    opens_local = serializers.CharField(required=False, help_text="ISO 8601, site local time.")
    opens_utc = serializers.CharField(required=False, help_text="ISO 8601, UTC.")

    def to_representation(self, instance: Any) -> dict[str, Any]:
        # Only the facts the kind set: DRF answers a missing nullable field (escalated_at)
        # with null, which put a wait-for-a-person field on every other kind.
        data = super().to_representation(instance)
        return {k: v for k, v in data.items() if k in instance}


class NeedsActionSerializer(serializers.Serializer):
    """What the workflow needs from a person now (``provisioning.attention``)."""

    kind = serializers.ChoiceField(
        choices=[
            "waiting-technician",
            "waiting-tenant",
            "waiting-window",
            "waiting-parts",
            "waiting-input",
            "paused-budget",
            "paused",
        ]
    )
    message = serializers.CharField()
    since = serializers.DateTimeField(allow_null=True)
    detail = NeedsActionDetailSerializer(
        help_text="Kind-specific facts; only those that apply to the kind are present."
    )


class WorkflowListSerializer(serializers.ListSerializer):
    """A page of workflows: their ``needs_action`` read for the whole page at once."""

    def to_representation(self, data: Any) -> list[Any]:
        items = list(data.all() if hasattr(data, "all") else data)
        # A ?brief or ?fields answer without it reads nothing for it.
        if "needs_action" in self.child.fields:
            cast(dict[str, Any], self.context)["needs_action"] = needs_action_for(items)
        return super().to_representation(items)


class WorkflowSerializer(serializers.ModelSerializer):
    site_code = serializers.CharField(source="site.code", read_only=True)
    needs_action = serializers.SerializerMethodField(
        help_text="What it needs from a person now (null: nothing)."
    )
    target_count = serializers.IntegerField(read_only=True)
    finished_count = serializers.IntegerField(read_only=True)
    failed_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Workflow
        brief_fields = ["kind", "state", "site"]
        fields = [
            "id",
            "kind",
            "state",
            "state_reason",
            "site",
            "site_code",
            "spec",
            "idempotency_key",
            "reason",
            "created_by",
            "current_batch",
            "target_count",
            "finished_count",
            "failed_count",
            "needs_action",
            "created_at",
            "started_at",
            "finished_at",
            "updated_at",
        ]
        read_only_fields = fields
        list_serializer_class = WorkflowListSerializer

    @extend_schema_field(NeedsActionSerializer(allow_null=True))
    def get_needs_action(self, workflow: Workflow) -> dict[str, Any] | None:
        known = self.context.get("needs_action")
        need: NeedsAction | None = (
            known[workflow.pk]
            if known is not None and workflow.pk in known
            else needs_action(workflow)
        )
        return None if need is None else dict(NeedsActionSerializer(need).data)


class BatchProgressSerializer(serializers.Serializer):
    batch = serializers.IntegerField()
    by_state = serializers.DictField(
        child=serializers.IntegerField(), help_text="Targets by state (a TargetState)."
    )


class StepCountsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    done = serializers.IntegerField(help_text="Succeeded.")
    failed = serializers.IntegerField()


class ProgressSerializer(serializers.Serializer):
    targets = serializers.IntegerField()
    by_state = serializers.DictField(
        child=serializers.IntegerField(), help_text="Targets by state (a TargetState)."
    )
    by_batch = BatchProgressSerializer(many=True)
    steps = StepCountsSerializer()
    percent = serializers.FloatField()


class BundleSerializer(serializers.Serializer):
    model = serializers.SlugField(help_text="The UltraServer model the release is for.")
    version = serializers.CharField()
    components = serializers.DictField(
        child=serializers.CharField(), help_text="Component → the version verification expects."
    )


class WorkflowDetailSerializer(WorkflowSerializer):
    progress = serializers.SerializerMethodField()
    firmware_bundle = serializers.SerializerMethodField(
        help_text="The firmware release it installs, per model of its targets, with the "
        "component versions its verification checks (empty for workflows that install none)."
    )

    class Meta(WorkflowSerializer.Meta):
        fields = [*WorkflowSerializer.Meta.fields, "progress", "firmware_bundle"]
        read_only_fields = fields

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, workflow) -> dict:
        from provisioning.services import progress

        return progress(workflow)

    @extend_schema_field(BundleSerializer(many=True))
    def get_firmware_bundle(self, workflow) -> list[dict]:
        version = (workflow.spec or {}).get("firmware_version")
        if not version:
            return []
        releases = FirmwareRelease.objects.filter(
            version=version,
            model__in=UltraServer.objects.filter(workflow_targets__workflow=workflow).values(
                "model"
            ),
        ).select_related("model")
        return [
            {"model": r.model.slug, "version": r.version, "components": r.components}
            for r in releases.order_by("model__slug")
        ]


class TargetSerializer(serializers.ModelSerializer):
    serial = serializers.CharField(source="ultraserver.serial", read_only=True)

    class Meta:
        model = WorkflowTarget
        fields = [
            "id",
            "ultraserver",
            "serial",
            "active",
            "batch",
            "state",
            "started_at",
            "finished_at",
            "error",
            "verified_state",
        ]
        read_only_fields = fields


class StepSerializer(serializers.ModelSerializer):
    ultraserver = serializers.IntegerField(source="target.ultraserver_id", read_only=True)

    class Meta:
        model = Step
        # what a run changes (``runner.STEP_FIELDS``) after what it does not
        fields = ["id", "ultraserver", "seq", "name", "max_attempts", *STEP_FIELDS]
        read_only_fields = fields


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = WorkflowEvent
        fields = ["id", "at", "kind", "message", "actor", "step", "target"]
        read_only_fields = fields


class PauseSerializer(serializers.Serializer):
    """Pause or cancel: always with why (issue 17)."""

    reason = serializers.CharField(
        max_length=500, help_text="Why (required; kept in the workflow's history)."
    )


class OperatorActionSerializer(serializers.Serializer):
    """Retry, skip, force-release a server, or abort the batch in flight: always with why."""

    reason = serializers.CharField(
        max_length=500, help_text="Why (kept in the workflow's history and the audit log)."
    )


class ResumeSerializer(serializers.Serializer):
    """A new failure budget, optionally: the schema of ``resume/``'s body. The view reads no
    field of it: the body goes to ``services.resume`` as sent, which checks it against the
    kind's declared spec (``"5"`` is refused as it is in ``spec``; any other key by name)."""

    max_failures = serializers.IntegerField(required=False)
    max_failure_pct = serializers.FloatField(required=False)


class InputSerializer(serializers.Serializer):
    step = serializers.CharField(max_length=40)
    ultraserver = serializers.IntegerField(min_value=1, required=False)
    data = serializers.DictField()


class PartReplacementSerializer(serializers.ModelSerializer):
    class Meta:
        model = PartReplacement
        fields = [
            "id",
            "ultraserver",
            "part",
            "removed_serial",
            "installed_serial",
            "rma_number",
            "technician",
            "created_at",
        ]
        read_only_fields = ["id", "technician", "created_at"]
        extra_kwargs = {"ultraserver": {"queryset": UltraServer.objects.all()}}


class MaintenanceWindowSerializer(serializers.ModelSerializer):
    site = ScopedPrimaryKeyRelatedField(queryset=Site.objects.all(), tenant_fields=SITE_TENANT)
    weekdays = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=6), min_length=1, max_length=7
    )

    class Meta:
        model = MaintenanceWindow
        brief_fields = ["name", "site", "status"]
        fields = [
            "id",
            "site",
            "name",
            "weekdays",
            "start_time",
            "duration_minutes",
            "status",
            "proposed_by",
            "decided_by",
            "decided_at",
            "created_at",
        ]
        read_only_fields = ["status", "proposed_by", "decided_by", "decided_at", "created_at"]


class CapacityFloorSerializer(serializers.ModelSerializer):
    site = ScopedPrimaryKeyRelatedField(queryset=Site.objects.all(), tenant_fields=SITE_TENANT)

    class Meta:
        model = CapacityFloor
        brief_fields = ["site"]
        fields = ["id", "site", "min_in_service", "updated_at"]
        read_only_fields = ["updated_at"]


class FirmwareReleaseSerializer(serializers.ModelSerializer):
    class Meta:
        model = FirmwareRelease
        brief_fields = ["model", "version"]
        fields = [
            "id",
            "model",
            "version",
            "origin",
            "sha256",
            "signature",
            "key_id",
            "baseline",
            "components",
            "created_at",
        ]
        read_only_fields = ["created_at"]


class FaultSerializer(serializers.Serializer):
    ultraserver = ScopedPrimaryKeyRelatedField(
        queryset=UltraServer.objects.select_related("rack__site", "model"),
        tenant_fields=("rack__site__tenant", "tenant"),
    )
    reason = serializers.CharField(max_length=500)
    open_workflow = serializers.BooleanField(default=True)


class FaultResultSerializer(serializers.Serializer):
    ultraserver = serializers.IntegerField()
    in_maintenance = serializers.BooleanField()
    fault_reason = serializers.CharField()
    workflow = serializers.IntegerField(allow_null=True)
    fault = serializers.IntegerField(
        allow_null=True, help_text="The fault record; null if one is already open for it."
    )
    severity = serializers.ChoiceField(
        choices=FaultSeverity.choices, allow_null=True, help_text="The open fault's severity."
    )
    action = serializers.ChoiceField(
        choices=FaultAction.choices,
        allow_null=True,
        help_text="What became of the report: waiting-capacity-floor when the drain was "
        "refused (the fault is kept, and the health sweep tries again).",
    )
    action_detail = serializers.CharField(allow_null=True, help_text="Why: a refusal's words.")


class FaultNoteSerializer(serializers.Serializer):
    """A person's note on acknowledging or resolving a fault (audited with it)."""

    note = serializers.CharField(max_length=500, help_text="What you saw, or will do.")


class FaultSilenceSerializer(FaultNoteSerializer):
    until = serializers.DateTimeField(help_text="In the future, at most 7 days ahead.")


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        brief_fields = ["kind", "site"]
        fields = ["id", "tenant", "site", "workflow", "kind", "message", "created_at"]
        read_only_fields = fields


class JobRunSerializer(serializers.ModelSerializer):
    summary = serializers.DictField(
        read_only=True, help_text="What the run did: the job's own figures; empty until it ends."
    )

    class Meta:
        model = JobRun
        brief_fields = ["job", "started_at", "outcome"]
        fields = ["id", "job", "started_at", "finished_at", "outcome", "summary", "error"]
        read_only_fields = fields
