from django.db import models

from factory import wire

# What raised a fault: the health rules of the telemetry pipeline, plus reports by people
# (the wire contract's rule names, factory.wire, with their labels).
FaultRule = models.TextChoices(
    "FaultRule", [(r.name, (r.value, wire.FAULT_RULE_LABELS[r])) for r in wire.FaultRule]
)


class Resolution(models.TextChoices):
    RAW = "raw", "Raw samples"
    MINUTE = "1m", "1-minute roll-up"
    HOUR = "1h", "1-hour roll-up"


# Devices whose readings the control plane keeps (a BMC's are the chip samples).
DeviceKind = models.TextChoices(
    "DeviceKind",
    [
        (d.name, (d.value, wire.DEVICE_KIND_LABELS[d]))
        for d in (wire.DeviceKind.PDU, wire.DeviceKind.CDU)
    ],
)


class FaultSeverity(models.TextChoices):
    """How urgent a fault is, set from its rule's policy when it opens (``wire``)."""

    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class FaultAction(models.TextChoices):
    """What the control plane did about a fault: shown beside it, so a refused drain is a
    visible state, not a missing record."""

    RECORDED = "recorded", "Recorded only"
    MAINTENANCE = "maintenance", "Maintenance opened"
    HELD = "held", "Handled by the workflow holding the server"
    WAITING_FLOOR = "waiting-capacity-floor", "Waiting: capacity floor"
    ISOLATED = "isolated", "Powered off (isolated)"
