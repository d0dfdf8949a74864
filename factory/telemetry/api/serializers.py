from rest_framework import serializers

from factory import wire
from factory.telemetry.choices import Resolution
from factory.telemetry.models import Fault


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Reports stored.")
    replayed = serializers.IntegerField(help_text="Reports already stored before: ignored.")
    chip_samples = serializers.IntegerField()
    dropped_metrics = serializers.ListField(
        child=serializers.CharField(), help_text="Metrics the site's egress rule keeps at home."
    )
    faults_opened = serializers.IntegerField()


class TelemetryBatchSerializer(serializers.Serializer):
    """Documentation only: the body is parsed by ``factory.telemetry.ingest``."""

    reports = serializers.ListField(child=serializers.DictField())


class AgentConfigSerializer(serializers.Serializer):
    site = serializers.CharField()
    interval_seconds = serializers.FloatField()
    telemetry_categories = serializers.ListField(child=serializers.CharField())
    metrics = serializers.ListField(child=serializers.CharField())


class AgentEventSerializer(serializers.Serializer):
    source = serializers.CharField(max_length=wire.MAX_SOURCE_LENGTH)
    kind = serializers.CharField(max_length=32)
    chip = serializers.IntegerField(min_value=0, max_value=1023, required=False, allow_null=True)
    feed = serializers.CharField(max_length=64, required=False, allow_blank=True)
    message = serializers.CharField(max_length=500, required=False, allow_blank=True)
    timestamp = serializers.DateTimeField()


class AgentEventsSerializer(serializers.Serializer):
    events = AgentEventSerializer(many=True, allow_empty=False, max_length=wire.MAX_EVENTS)


class SeriesQuerySerializer(serializers.Serializer):
    start = serializers.DateTimeField(required=False)
    end = serializers.DateTimeField(required=False)
    resolution = serializers.ChoiceField(choices=Resolution.choices, default=Resolution.MINUTE)

    def validate(self, attrs):
        if attrs.get("start") and attrs.get("end") and attrs["start"] >= attrs["end"]:
            raise serializers.ValidationError({"end": "end must be after start."}, code="range")
        return attrs


class FaultSerializer(serializers.ModelSerializer):
    site_code = serializers.CharField(source="site.code", read_only=True)
    ultraserver_serial = serializers.CharField(
        source="ultraserver.serial", read_only=True, default=None
    )

    class Meta:
        model = Fault
        fields = [
            "id",
            "site",
            "site_code",
            "ultraserver",
            "ultraserver_serial",
            "chip_index",
            "rule",
            "detail",
            "opened_at",
            "cleared_at",
            "cleared_reason",
        ]
        read_only_fields = fields
