"""Placement's scheduled job, recorded as a ``JobRun`` like the other scheduled jobs."""

from __future__ import annotations

from provisioning.jobruns import JOB_CTX, recorded
from provisioning.placement import lifecycle, services

JOB_NAME = "advance-reservations"


@recorded(JOB_NAME)
def advance_reservations() -> dict:
    """Start, expire, repair or fail capacity reservations whose time has come, and open the
    maintain workflow of every accepted unit replacement that could not be opened when it was
    accepted (``replacements_done``: how many opened now). Idempotent."""
    summary = services.advance_reservations(JOB_CTX)
    summary["replacements_done"] = lifecycle.retry_accepted()
    return summary
