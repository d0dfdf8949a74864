from rest_framework import serializers

from factory import wire
from factory.agents.models import AgentCommand, SiteAgent


class SiteAgentSerializer(serializers.ModelSerializer):
    site_code = serializers.CharField(source="site.code", read_only=True)

    class Meta:
        model = SiteAgent
        brief_fields = ["name", "site"]
        fields = [
            "id",
            "site",
            "site_code",
            "name",
            "prefix",
            "created_at",
            "last_seen_at",
            "revoked_at",
        ]
        read_only_fields = ["prefix", "created_at", "last_seen_at", "revoked_at"]


class IssuedSiteAgentSerializer(SiteAgentSerializer):
    token = serializers.CharField(read_only=True, help_text="Shown once; store it now.")

    class Meta(SiteAgentSerializer.Meta):
        fields = [*SiteAgentSerializer.Meta.fields, "token"]


class AgentCommandSerializer(serializers.ModelSerializer):
    ultraserver_serial = serializers.CharField(
        source="ultraserver.serial", read_only=True, allow_null=True
    )

    class Meta:
        model = AgentCommand
        brief_fields = ["kind", "state", "ultraserver"]
        fields = [
            "id",
            "site",
            "ultraserver",
            "ultraserver_serial",
            "kind",
            "params",
            "state",
            "timeout_seconds",
            "claimed_at",
            "result_due_at",
            "result",
            "error",
            "late",
            "requested_by",
            "created_at",
            "completed_at",
        ]
        read_only_fields = fields


class ClaimRequestSerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=wire.MAX_CLAIM, default=10)
    wait_seconds = serializers.FloatField(
        min_value=0, max_value=wire.MAX_CLAIM_WAIT_SECONDS, default=0
    )


class ClaimedCommandSerializer(serializers.ModelSerializer):
    ultraserver_serial = serializers.CharField(
        source="ultraserver.serial", read_only=True, allow_null=True
    )

    class Meta:
        model = AgentCommand
        fields = list(wire.fields(wire.ClaimedCommand))
        read_only_fields = fields


class ClaimResponseSerializer(serializers.Serializer):
    commands = ClaimedCommandSerializer(many=True)
    retry_after_seconds = serializers.FloatField(
        required=False,
        help_text="Present when the claim did not wait (the server had no thread to spare) and "
        "nothing was queued: claim again after this many seconds.",
    )


class ResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    result = serializers.DictField(required=False, default=dict)
    error = serializers.CharField(
        required=False, default="", allow_blank=True, max_length=wire.MAX_ERROR_LENGTH
    )


class BatchResultItemSerializer(ResultSerializer):
    id = serializers.UUIDField()


class BatchResultSerializer(serializers.Serializer):
    """Results that finished together, recorded in one transaction (all or nothing)."""

    results = BatchResultItemSerializer(many=True, allow_empty=False, max_length=wire.MAX_RESULTS)

    def validate_results(self, value):
        ids = [item["id"] for item in value]
        if len(set(ids)) != len(ids):
            raise serializers.ValidationError("a command appears twice", code="duplicate")
        return value


class BatchResultResponseSerializer(serializers.Serializer):
    commands = AgentCommandSerializer(many=True)
