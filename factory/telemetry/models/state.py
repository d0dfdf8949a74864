from django.db import models

from factory import wire
from factory.telemetry.choices import DeviceKind
from factory.telemetry.models.samples import PackedChipMetrics


class ServerTelemetry(PackedChipMetrics):
    """The latest sample per UltraServer: where the API, the UI and the health rules read."""

    ultraserver = models.OneToOneField(
        "inventory.UltraServer",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="telemetry",
    )
    ts = models.DateTimeField()
    chips = models.PositiveSmallIntegerField()
    received_at = models.DateTimeField()
    link_outage_s = models.BinaryField(
        null=True, help_text="Per chip: seconds its links have been going down without a break."
    )

    class Meta:
        verbose_name_plural = "server telemetry"

    def __str__(self):
        return f"{self.ultraserver_id}@{self.ts:%Y-%m-%d %H:%M:%S}"


class DeviceReading(models.Model):
    """The latest reading of a site device other than a BMC: a rack PDU (per feed: watts drawn,
    up or down) or a CDU (coolant supply temperature)."""

    site = models.ForeignKey("inventory.Site", on_delete=models.CASCADE, related_name="+")
    source = models.CharField(max_length=80)
    kind = models.CharField(max_length=8, choices=DeviceKind.choices)
    rack = models.ForeignKey(
        "inventory.Rack", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    ts = models.DateTimeField()
    values = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "source"], name="reading_unique_source")
        ]

    def __str__(self):
        return f"{self.source}@{self.ts:%Y-%m-%d %H:%M:%S}"


class TelemetrySource(models.Model):
    """The highest report sequence accepted from one device of a site in one numbering epoch
    (an agent's run; "" for agents older than epochs): a replayed or repeated report is at or
    below it, and is acknowledged and ignored. Forgotten a week after it was last heard
    (``ingest.forget_epochs``)."""

    site = models.ForeignKey("inventory.Site", on_delete=models.CASCADE, related_name="+")
    source = models.CharField(max_length=80)
    epoch = models.CharField(max_length=wire.MAX_EPOCH_LENGTH, blank=True, default="")
    last_sequence = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True, help_text="When it was last heard.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["site", "source", "epoch"], name="source_epoch_unique_per_site"
            )
        ]
        indexes = [models.Index(fields=["updated_at"], name="source_heard")]

    def __str__(self):
        return f"{self.source}/{self.epoch or '-'} #{self.last_sequence}"
