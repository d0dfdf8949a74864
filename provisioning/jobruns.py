"""How a scheduled job's run is recorded (a ``JobRun``: start, end, outcome, summary or error).
Its own module so that every scheduled job uses it — ``provisioning.jobs`` and those of the apps
below it (``provisioning.placement.jobs``) — without an import cycle through the rollout.

Every change a run makes is audited as caused by it (cause ``job``, the run's id), whichever
context the service it calls was handed (``JOB_CTX`` or one of its own), unless it names a
nearer cause (a fault, a workflow)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec

from django.utils import timezone

from provisioning.choices import JobOutcome
from provisioning.models import JobRun
from tenants.access import SYSTEM
from tenants.choices import AuditCause, AuditSource
from tenants.services import audit
from tenants.services.changes import ChangeContext

JOB_CTX = ChangeContext(actor=SYSTEM, source=AuditSource.SYSTEM)
P = ParamSpec("P")


def job_ctx(job: JobRun) -> ChangeContext:
    """The context of the changes one run of a job makes: cause ``job``, the run's id."""
    return JOB_CTX.caused_by(AuditCause.JOB, job.pk)


def recorded(name: str) -> Callable[[Callable[P, dict]], Callable[P, dict]]:
    """Record each run of a job (start, end, outcome, summary or error)."""

    def wrap(fn: Callable[P, dict]) -> Callable[P, dict]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> dict:
            job = JobRun.objects.create(job=name, started_at=timezone.now())
            try:
                with audit.acting_for(job_ctx(job)):
                    summary = fn(*args, **kwargs)
            except Exception as exc:
                job.outcome, job.error = JobOutcome.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
                job.finished_at = timezone.now()
                job.save(update_fields=["outcome", "error", "finished_at"])
                raise
            job.outcome, job.summary, job.finished_at = JobOutcome.OK, summary, timezone.now()
            job.save(update_fields=["outcome", "summary", "finished_at"])
            return summary

        return run

    return wrap
