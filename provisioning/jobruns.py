"""How a scheduled job's run is recorded (a ``JobRun``: start, end, outcome, summary or error).
Its own module so that every scheduled job uses it — ``provisioning.jobs`` and those of the apps
below it (``provisioning.placement.jobs``) — without an import cycle through the rollout.

Every change a run makes is audited as caused by it (cause ``job``, the run's id), whichever
context the service it calls was handed (``JOB_CTX`` or one of its own), unless it names a
nearer cause (a fault, a workflow).

Runs of one job never overlap: a run holds a PostgreSQL advisory lock on its job's name, and
one that starts while another holds it does nothing but record itself ``skipped`` (a slow
roll-up, a beat sending twice, or two beat replicas never run the same job twice at once).
The lock is the session's, so a worker that dies releases it with its connection. SQLite (the
embedded default, one writer) holds none."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec

from django.db import connection
from django.utils import timezone

from provisioning.choices import JobOutcome
from provisioning.models import JobRun
from tenants.access import SYSTEM
from tenants.choices import AuditCause, AuditSource
from tenants.services import audit
from tenants.services.changes import ChangeContext

JOB_CTX = ChangeContext(actor=SYSTEM, source=AuditSource.SYSTEM)
P = ParamSpec("P")
#: Advisory-lock class of scheduled jobs (``pg_try_advisory_lock(class, hashtext(job))``).
JOB_LOCK_CLASS = 0x4A4F42


@contextmanager
def sole_run(name: str) -> Iterator[bool]:
    """Whether this is the only run of job ``name`` now: the job's lock, taken if free (never
    waited for) and released on leaving. Outside a transaction: the lock outlives commits."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", [JOB_LOCK_CLASS, name])
        (held,) = cursor.fetchone()
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_unlock(%s, hashtext(%s))", [JOB_LOCK_CLASS, name]
                )


def job_ctx(job: JobRun) -> ChangeContext:
    """The context of the changes one run of a job makes: cause ``job``, the run's id."""
    return JOB_CTX.caused_by(AuditCause.JOB, job.pk)


def recorded(name: str) -> Callable[[Callable[P, dict]], Callable[P, dict]]:
    """Record each run of a job (start, end, outcome, summary or error); a run that finds
    another in progress is recorded ``skipped`` and does nothing (``sole_run``)."""

    def wrap(fn: Callable[P, dict]) -> Callable[P, dict]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> dict:
            with sole_run(name) as alone:
                if not alone:
                    return _skipped(name)
                return _run(name, fn, *args, **kwargs)

        return run

    return wrap


def _skipped(name: str) -> dict:
    """Record a run that did nothing: the one in progress is named if it has a record."""
    running = JobRun.objects.filter(job=name, finished_at__isnull=True).order_by("-started_at")
    previous = running.values_list("pk", flat=True).first()
    which = f"run #{previous}" if previous else "another run"
    summary = {"skipped": f"{which} of {name} still in progress"}
    now = timezone.now()
    JobRun.objects.create(
        job=name, started_at=now, finished_at=now, outcome=JobOutcome.SKIPPED, summary=summary
    )
    return summary


def _run(name: str, fn: Callable[..., dict], *args: object, **kwargs: object) -> dict:
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
