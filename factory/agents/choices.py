from django.db import models

from factory import wire

# The wire contract's command kinds (factory.wire), with their labels, as Django choices.
CommandKind = models.TextChoices(
    "CommandKind", [(k.name, (k.value, wire.COMMANDS[k].label)) for k in wire.CommandKind]
)


class CommandState(models.TextChoices):
    QUEUED = "queued", "Queued"
    CLAIMED = "claimed", "Claimed by the agent"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "No result in time"
    CANCELLED = "cancelled", "Cancelled before the agent took it"


OPEN_STATES = frozenset({CommandState.QUEUED, CommandState.CLAIMED})
