from rest_framework import serializers

from factory import wire
from factory.inventory.choices import ChipHealth
from factory.telemetry.choices import Resolution
from factory.telemetry.models import Fault
from factory.telemetry.services import MAX_POINTS


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
    device_kind = serializers.ChoiceField(
        choices=[k.value for k in wire.DeviceKind],
        required=False,
        help_text="What the source is: a leak at a CDU isolates the servers it cools.",
    )


class AgentEventsSerializer(serializers.Serializer):
    events = AgentEventSerializer(many=True, allow_empty=False, max_length=wire.MAX_EVENTS)


class SeriesQuerySerializer(serializers.Serializer):
    start = serializers.DateTimeField(
        required=False,
        help_text="First instant (inclusive); default: end minus 10 min (raw), 6 h (1m), "
        "7 days (1h). To go on after a truncated answer, pass its `next_start`.",
    )
    end = serializers.DateTimeField(required=False, help_text="Last instant (exclusive); now.")
    resolution = serializers.ChoiceField(choices=Resolution.choices, default=Resolution.MINUTE)
    limit = serializers.IntegerField(
        min_value=1,
        max_value=MAX_POINTS,
        default=MAX_POINTS,
        help_text=f"Most points in the answer (at most {MAX_POINTS:,}).",
    )

    def validate(self, attrs):
        if attrs.get("start") and attrs.get("end") and attrs["start"] >= attrs["end"]:
            raise serializers.ValidationError({"end": "end must be after start."}, code="range")
        return attrs


# --- Read shapes (documentation of what the services answer) -------------------------------


def _metric_field(spec: wire.MetricSpec, many: bool) -> serializers.Field:
    """A per-chip metric: one value (chip-health) or one value per chip (a raw point); null
    where the site's egress rule keeps its category at the site."""
    help_text = f"{spec.description} ({spec.unit}); null: not sent from the site."
    field: type[serializers.Field] = serializers.FloatField
    kwargs: dict = {}
    if spec.name == wire.Metric.HEALTH:
        field, kwargs = serializers.ChoiceField, {"choices": ChipHealth.choices}
        help_text = "The health the chip reports (its BMC's), by name; null: not sent."
    elif spec.type.integral:
        field = serializers.IntegerField
    if many:
        return serializers.ListField(child=field(**kwargs), allow_null=True, help_text=help_text)
    return field(**kwargs, allow_null=True, help_text=help_text)


ChipValuesSerializer = serializers.SerializerMetaclass(
    "ChipValuesSerializer",
    (serializers.Serializer,),
    {
        "__doc__": "Every chip's values of one raw sample: one list per metric, one value per "
        "chip (index order).",
        **{m.name: _metric_field(m, many=True) for m in wire.CHIP_METRICS},
    },
)


class TelemetryPointSerializer(serializers.Serializer):
    ts = serializers.DateTimeField(help_text="The sample's instant, or the bucket's start.")
    power_w = serializers.FloatField(allow_null=True, help_text="Total (raw), mean (roll-up).")
    temp_max_c = serializers.FloatField(allow_null=True)
    temp_avg_c = serializers.FloatField(allow_null=True)
    utilization_avg = serializers.FloatField(allow_null=True)
    failed_chips = serializers.IntegerField(help_text="Chips reporting `failed` (max, roll-up).")
    samples = serializers.IntegerField(required=False, help_text="Roll-ups only: raw samples.")
    power_max_w = serializers.FloatField(
        required=False, allow_null=True, help_text="Roll-ups only."
    )
    chips = ChipValuesSerializer(required=False, help_text="Raw samples only: every chip.")


class TelemetrySeriesSerializer(serializers.Serializer):
    ultraserver = serializers.IntegerField()
    resolution = serializers.ChoiceField(choices=Resolution.choices)
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    limit = serializers.IntegerField(help_text="The most points this answer could carry.")
    truncated = serializers.BooleanField(
        help_text="More points lie between the last one and `end`: ask again from `next_start` "
        "(or a coarser resolution)."
    )
    next_start = serializers.DateTimeField(
        allow_null=True, help_text="When truncated: the first point left out; else null."
    )
    points = TelemetryPointSerializer(many=True)


ChipReadingSerializer = serializers.SerializerMetaclass(
    "ChipReadingSerializer",
    (serializers.Serializer,),
    {
        "__doc__": "One chip now: the inventory's verdict and the latest sample's readings.",
        "index": serializers.IntegerField(),
        "serial": serializers.CharField(),
        "health": serializers.ChoiceField(
            choices=ChipHealth.choices, help_text="The inventory's verdict, as in `/chips/`."
        ),
        "health_note": serializers.CharField(allow_blank=True),
        "reported_health": _metric_field(wire.METRICS[wire.Metric.HEALTH], many=False),
        **{
            m.name: _metric_field(m, many=False)
            for m in wire.CHIP_METRICS
            if m.name != wire.Metric.HEALTH
        },
    },
)


class ChipHealthSerializer(serializers.Serializer):
    ultraserver = serializers.IntegerField()
    ts = serializers.DateTimeField(allow_null=True, help_text="The latest sample; null: none.")
    received_at = serializers.DateTimeField(allow_null=True)
    chips = ChipReadingSerializer(many=True)


class FeedDrawSerializer(serializers.Serializer):
    power_w = serializers.FloatField(help_text="What the PDU measures on this feed.")
    up = serializers.BooleanField()


class RackPowerDrawSerializer(serializers.Serializer):
    rack = serializers.IntegerField()
    name = serializers.CharField()
    budget_w = serializers.FloatField(help_text="Protected budget: the weaker path under A+B.")
    committed_w = serializers.FloatField(help_text="Peak power of what is placed.")
    drawn_w = serializers.FloatField(allow_null=True, help_text="Measured; null: no reading.")
    feeds = serializers.DictField(child=FeedDrawSerializer(), help_text="By feed name.")
    measured_at = serializers.DateTimeField(allow_null=True)


class SitePowerDrawSerializer(serializers.Serializer):
    site = serializers.IntegerField()
    contracted_w = serializers.FloatField()
    budget_w = serializers.FloatField()
    committed_w = serializers.FloatField()
    drawn_w = serializers.FloatField(allow_null=True, help_text="Null: no rack measured yet.")
    racks = RackPowerDrawSerializer(many=True)


class FaultSerializer(serializers.ModelSerializer):
    """A fault, what the control plane did about it (``action``: by its rule's policy, and as
    the drain went), and what people did (acknowledged, silenced, resolved)."""

    site_code = serializers.CharField(source="site.code", read_only=True)
    ultraserver_serial = serializers.CharField(
        source="ultraserver.serial", read_only=True, default=None
    )
    silenced = serializers.SerializerMethodField(help_text="Silenced now (until is ahead).")

    class Meta:
        model = Fault
        brief_fields = ["rule", "ultraserver", "site"]
        fields = [
            "id",
            "site",
            "site_code",
            "ultraserver",
            "ultraserver_serial",
            "chip_index",
            "rule",
            "severity",
            "action",
            "action_detail",
            "detail",
            "opened_at",
            "acknowledged_at",
            "acknowledged_by",
            "acknowledge_note",
            "silenced",
            "silenced_until",
            "silenced_by",
            "silence_note",
            "cleared_at",
            "cleared_reason",
            "cleared_by",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "severity": {"help_text": "info, warning or critical: its rule's, when it opened."},
            "action": {"help_text": "What the control plane did about it, kept up to date."},
        }

    def get_silenced(self, fault: Fault) -> bool:
        return fault.silenced
