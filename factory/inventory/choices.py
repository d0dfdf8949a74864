from django.db import models


class SiteStatus(models.TextChoices):
    PLANNED = "planned", "Planned"
    ACTIVE = "active", "Active"
    DECOMMISSIONING = "decommissioning", "Decommissioning"
    RETIRED = "retired", "Retired"


class RackStatus(models.TextChoices):
    PLANNED = "planned", "Planned"
    ACTIVE = "active", "Active"
    RETIRED = "retired", "Retired"


class FeedPath(models.TextChoices):
    A = "A", "A"
    B = "B", "B"


class Phase(models.TextChoices):
    SINGLE = "single", "Single-phase"
    THREE = "three", "Three-phase"


class LifecycleState(models.TextChoices):
    PLANNED = "planned", "Planned"
    INSTALLING = "installing", "Installing"
    INSTALL_FAILED = "install-failed", "Install failed"
    BURN_IN = "burn-in", "Burn-in"
    BURN_IN_FAILED = "burn-in-failed", "Burn-in failed"
    READY = "ready", "Ready"
    IN_SERVICE = "in-service", "In service"
    DRAINING = "draining", "Draining"
    DRAIN_FAILED = "drain-failed", "Drain failed"
    MAINTENANCE = "maintenance", "Maintenance"
    MAINTENANCE_FAILED = "maintenance-failed", "Maintenance failed"
    UPGRADING = "upgrading", "Upgrading"
    UPGRADE_FAILED = "upgrade-failed", "Upgrade failed"
    DECOMMISSIONED = "decommissioned", "Decommissioned"


class ChipHealth(models.TextChoices):
    OK = "ok", "OK"
    DEGRADED = "degraded", "Degraded"
    FAILED = "failed", "Failed"
    UNKNOWN = "unknown", "Unknown"
