from django.db import models


class CommandKind(models.TextChoices):
    INSTALL_CHECK = "install-check", "Confirm installed and cabled"
    FLASH_FIRMWARE = "flash-firmware", "Flash firmware (SimpleUpdate)"
    ACTIVATE_BANK = "activate-bank", "Boot the other firmware bank (rollback)"
    RESET = "reset", "Reset (ComputerSystem.Reset)"
    BURN_IN = "burn-in", "Run burn-in"
    INTERCONNECT_CHECK = "interconnect-check", "Validate interconnect"
    DRAIN = "drain", "Drain workloads"
    UNDRAIN = "undrain", "Return to scheduling"
    QUERY_STATE = "query-state", "Read the real hardware state"


class CommandState(models.TextChoices):
    QUEUED = "queued", "Queued"
    CLAIMED = "claimed", "Claimed by the agent"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "No result in time"
    CANCELLED = "cancelled", "Cancelled before the agent took it"


OPEN_STATES = frozenset({CommandState.QUEUED, CommandState.CLAIMED})
