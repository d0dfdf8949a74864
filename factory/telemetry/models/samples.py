from django.db import models

from factory.telemetry.choices import Resolution


class PackedChipMetrics(models.Model):
    """One packed column per chip metric (see ``codec``); null where the site's egress rule kept
    the category at the site."""

    power_w = models.BinaryField(null=True)
    energy_j = models.BinaryField(null=True)
    temp_c = models.BinaryField(null=True)
    utilization = models.BinaryField(null=True)
    hbm_used_gb = models.BinaryField(null=True)
    ecc_corrected = models.BinaryField(null=True)
    ecc_uncorrected = models.BinaryField(null=True)
    link_errors = models.BinaryField(null=True)
    link_down_s = models.BinaryField(null=True)
    throttle_s = models.BinaryField(null=True)
    health = models.BinaryField(null=True)
    # Per-server figures computed at ingest, so roll-ups and charts never unpack chips.
    power_total_w = models.FloatField(null=True)
    temp_max_c = models.FloatField(null=True)
    temp_avg_c = models.FloatField(null=True)
    utilization_avg = models.FloatField(null=True)
    failed_chips = models.PositiveSmallIntegerField(default=0)

    class Meta:
        abstract = True


class ServerSample(PackedChipMetrics):
    """Raw: every chip of one UltraServer at one instant. Written with COPY, expired by the
    retention job."""

    id = models.BigAutoField(primary_key=True)
    ultraserver = models.ForeignKey(
        "inventory.UltraServer", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    ts = models.DateTimeField()
    chips = models.PositiveSmallIntegerField()

    class Meta:
        # One sample per server and device Timestamp, whatever numbered it: a second agent or
        # a restarted one never stores the same sample twice (ingest inserts ON CONFLICT DO
        # NOTHING). Also the index of a server's series.
        constraints = [
            models.UniqueConstraint(fields=["ultraserver", "ts"], name="sample_unique_server_ts")
        ]
        indexes = [models.Index(fields=["ts"], name="sample_ts")]

    def __str__(self):
        return f"{self.ultraserver_id}@{self.ts:%Y-%m-%d %H:%M:%S}"


class ServerRollup(models.Model):
    """Per-server figures averaged over a minute or an hour: what charts over days read."""

    ultraserver = models.ForeignKey(
        "inventory.UltraServer", on_delete=models.CASCADE, related_name="+"
    )
    resolution = models.CharField(max_length=3, choices=Resolution.choices)
    bucket = models.DateTimeField()
    samples = models.PositiveIntegerField()
    power_avg_w = models.FloatField(null=True)
    power_max_w = models.FloatField(null=True)
    temp_avg_c = models.FloatField(null=True)
    temp_max_c = models.FloatField(null=True)
    utilization_avg = models.FloatField(null=True)
    failed_chips_max = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["ultraserver", "resolution", "bucket"], name="rollup_unique_bucket"
            )
        ]
        indexes = [models.Index(fields=["resolution", "bucket"], name="rollup_bucket")]

    def __str__(self):
        return f"{self.ultraserver_id} {self.resolution} {self.bucket:%Y-%m-%d %H:%M}"


class RollupBacklog(models.Model):
    """A minute of one server that a late sample landed in (its Timestamp older than the
    roll-up's window reaches back: a spooled agent catching up). Ingest notes it, the next
    roll-up recomputes that minute and its hour and deletes the note; so each run reads only
    new rows, and a late sample is still counted."""

    id = models.BigAutoField(primary_key=True)
    ultraserver = models.ForeignKey(
        "inventory.UltraServer", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    bucket = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ultraserver", "bucket"], name="backlog_unique_bucket")
        ]

    def __str__(self):
        return f"{self.ultraserver_id} {self.bucket:%Y-%m-%d %H:%M}"


class RollupCursor(models.Model):
    """Where the roll-up got to: the start of its last run that committed. The next run reads
    raw rows from a little before it (see ``services.roll_up``)."""

    name = models.CharField(max_length=20, primary_key=True)
    rolled_until = models.DateTimeField()

    def __str__(self):
        return f"{self.name} until {self.rolled_until:%Y-%m-%d %H:%M:%S}"
