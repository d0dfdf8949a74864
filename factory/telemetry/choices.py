from django.db import models


class FaultRule(models.TextChoices):
    """What raised a fault. The health rules of the telemetry pipeline, plus reports by people."""

    ECC_UNCORRECTABLE = "ecc-uncorrectable", "Uncorrectable ECC"
    CHIP_DOWN = "chip-down", "Chip down"
    LINK_DOWN = "link-down", "Link down past the limit"
    THERMAL_THROTTLE = "thermal-throttle", "Thermal throttling"
    FEED_LOSS = "feed-loss", "Power feed lost"
    COOLANT_EXCURSION = "coolant-excursion", "Coolant supply too warm"
    AGENT_SILENT = "agent-silent", "Site agent silent"
    REPORTED = "reported", "Reported by a person"


class Resolution(models.TextChoices):
    RAW = "raw", "Raw samples"
    MINUTE = "1m", "1-minute roll-up"
    HOUR = "1h", "1-hour roll-up"


class DeviceKind(models.TextChoices):
    PDU = "pdu", "Rack PDU"
    CDU = "cdu", "Coolant distribution unit"
