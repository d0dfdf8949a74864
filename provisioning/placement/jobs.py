"""Placement's scheduled job, recorded as a ``JobRun`` like the other scheduled jobs
(``provisioning.jobs``; not imported from there, so that module may use placement freely)."""

from __future__ import annotations

from django.utils import timezone

from provisioning.choices import JobOutcome
from provisioning.models import JobRun
from provisioning.placement import lifecycle, services
from tenants.access import SYSTEM
from tenants.choices import AuditSource
from tenants.services.changes import ChangeContext

JOB_CTX = ChangeContext(actor=SYSTEM, source=AuditSource.SYSTEM)
JOB_NAME = "advance-reservations"


def advance_reservations() -> dict:
    """Start, expire, repair or fail capacity reservations whose time has come, and open the
    maintain workflow of every accepted unit replacement that could not be opened when it was
    accepted (``replacements_done``: how many opened now). Idempotent."""
    job = JobRun.objects.create(job=JOB_NAME, started_at=timezone.now())
    try:
        summary = services.advance_reservations(JOB_CTX)
        summary["replacements_done"] = lifecycle.retry_accepted()
    except Exception as exc:
        job.outcome, job.error = JobOutcome.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
        job.finished_at = timezone.now()
        job.save(update_fields=["outcome", "error", "finished_at"])
        raise
    job.outcome, job.summary, job.finished_at = JobOutcome.OK, summary, timezone.now()
    job.save(update_fields=["outcome", "summary", "finished_at"])
    return summary
