"""The workflow engine for Prometheus, read at scrape time like the fleet
(``factory.telemetry.metrics``): workflows by state, how long steps took, what is due, what
the scheduled jobs did, and how many hints wait in the broker.

Step and job durations are histograms built from the rows' start and finish times, each in
one aggregate query over every finished row (bucket counts by conditional aggregation:
``tally_durations``). So every web worker answers the same, a restart loses nothing, and, the
rows being kept, the counts only grow: a run that finishes late is counted when it finishes,
by every process alike. The cost grows with the rows, so a scrape's database families are
cached per scope (``METRICS_CACHE_SECONDS``) and scrapes have their own rate budget.

``factory_workflows_finished`` counts the finished workflows there are now: a gauge, not a
counter, since it falls when rows go or a site changes tenant (alert with ``delta``, not
``increase``). Labels are workflow kinds, step names, job names and queue names: all fixed by
the code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import redis
from django.conf import settings
from django.db.models import Count, Max, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from factory.telemetry.metrics import SITE_OWNED, Scope, histogram, tally_durations
from provisioning.choices import (
    DUE_STEP_STATES,
    FINISHED_WORKFLOW_STATES,
    JobOutcome,
    StepState,
    WorkflowKind,
)
from provisioning.models import JobRun, Step, Workflow
from provisioning.runner import DUE_WORKFLOW_STATES

#: A step may wait on hardware or a person: seconds to hours.
STEP_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
JOB_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
STEP_TENANT = ("workflow__site__tenant",)
FINISHED_ORDER = sorted(str(state) for state in FINISHED_WORKFLOW_STATES)
#: kombu's Redis transport keeps a queue's priorities 3, 6 and 9 under keys of their own.
_PRIORITY_SEP, _PRIORITY_STEPS = "\x06\x16", (3, 6, 9)


def collect(scope: Scope) -> Iterable[Metric]:
    yield from workflows(scope)
    yield from steps(scope)
    if scope.everything:  # plant-wide: no tenant owns a job or a broker queue
        yield from jobs()
        yield from scheduler_lease()
        yield from broker_queues()


def workflows(scope: Scope) -> Iterable[Metric]:
    mine = scope.filter(Workflow.objects.all(), SITE_OWNED)
    by_state = GaugeMetricFamily(
        "factory_workflows", "Workflows by kind and state.", labels=["kind", "state"]
    )
    finished = GaugeMetricFamily(
        "factory_workflows_finished",
        "Workflows that have ended and are still recorded, by kind and how (succeeded, "
        "failed, cancelled), 0 for none yet. A gauge: it falls when rows go or a site "
        "changes tenant.",
        labels=["kind", "state"],
    )
    # Every kind and end, 0 included: an alert sees the first failure as a rise from 0.
    ended = {(kind, state): 0 for kind in WorkflowKind.values for state in FINISHED_ORDER}
    for row in mine.order_by().values("kind", "state").annotate(n=Count("pk")):
        by_state.add_metric([row["kind"], row["state"]], row["n"])
        if row["state"] in FINISHED_WORKFLOW_STATES:
            ended[(row["kind"], row["state"])] = row["n"]
    for (kind, state), n in sorted(ended.items()):
        finished.add_metric([kind, state], n)
    yield by_state
    yield finished


def steps(scope: Scope) -> Iterable[Metric]:
    """Two queries whatever the history: the finished steps' histogram (one aggregate over
    them all) and the live backlog (one aggregate over the running workflows' steps)."""
    mine = scope.filter(Step.objects.all(), STEP_TENANT)
    finished = tally_durations(
        mine.filter(state__in=[StepState.SUCCEEDED, StepState.FAILED]),
        ["workflow__kind", "name", "state"],
        "started_at",
        "finished_at",
        STEP_BUCKETS,
    )
    yield histogram(
        "factory_workflow_step_duration_seconds",
        "Finished workflow steps, from first claim to finish (waits on hardware included), "
        "by workflow kind, step and outcome.",
        ["kind", "step", "outcome"],
        STEP_BUCKETS,
        [(labels, durations) for labels, (durations, _) in finished.items()],
    )
    now = timezone.now()
    live = mine.filter(workflow__state__in=DUE_WORKFLOW_STATES)
    due = GaugeMetricFamily(
        "factory_workflow_steps_due",
        "Steps due to run now (ready, or waiting past their next check) in running, paused "
        "or cancelling workflows: the runner's backlog.",
        labels=["kind"],
    )
    leased = GaugeMetricFamily(
        "factory_workflow_steps_leased",
        "Steps a worker holds now; `expired`: its lease ran out (the worker vanished) and the "
        "reconciler has not handed it back yet.",
        labels=["kind", "lease"],
    )
    counts = (
        live.order_by()
        .values("workflow__kind")
        .annotate(
            due=Count(
                "pk",
                filter=Q(state__in=DUE_STEP_STATES)
                & (Q(next_check_at__isnull=True) | Q(next_check_at__lte=now)),
            ),
            held=Count("pk", filter=Q(state=StepState.RUNNING, lease_expires_at__gte=now)),
            expired=Count("pk", filter=Q(state=StepState.RUNNING, lease_expires_at__lt=now)),
        )
    )
    for row in counts:
        kind = row["workflow__kind"]
        due.add_metric([kind], row["due"])
        leased.add_metric([kind, "held"], row["held"])
        leased.add_metric([kind, "expired"], row["expired"])
    yield due
    yield leased


def jobs() -> Iterable[Metric]:
    """Every finished run of the scheduled jobs, in one aggregate query: the same from every
    process, and it only grows (runs are kept)."""
    found = tally_durations(
        JobRun.objects.all(),
        ["job", "outcome"],
        "started_at",
        "finished_at",
        JOB_BUCKETS,
        last_ok=Max("finished_at", filter=Q(outcome=JobOutcome.OK)),
    )
    yield histogram(
        "factory_job_duration_seconds",
        "Runs of the scheduled jobs that finished, by job and outcome (ok, failed; skipped: "
        "another run was in progress).",
        ["job", "outcome"],
        JOB_BUCKETS,
        [(labels, durations) for labels, (durations, _) in found.items()],
    )
    last_ok: dict[str, float] = {}
    for (job, _), (_, extra) in found.items():
        at = extra["last_ok"]
        if at is not None:
            last_ok[job] = max(last_ok.get(job, 0.0), at.timestamp())
    last = GaugeMetricFamily(
        "factory_job_last_success_timestamp_seconds",
        "When each scheduled job last finished without an error (Unix time).",
        labels=["job"],
    )
    for job, at in sorted(last_ok.items()):
        last.add_metric([job], at)
    yield last


def scheduler_lease() -> Iterable[Metric]:
    """Whether a beat replica is sending the scheduled jobs (``provisioning.scheduler``): one
    row, whatever the fleet size."""
    from provisioning import scheduler

    now = scheduler.state()
    up = GaugeMetricFamily(
        "factory_scheduler_up",
        "1 if a Celery beat replica renewed the scheduler lease within one lease "
        "(SCHEDULER_LEASE_SECONDS), else 0: no one is sending the scheduled jobs.",
    )
    up.add_metric([], 1.0 if now.up else 0.0)
    yield up
    if now.renewed_at is not None:
        renewed = GaugeMetricFamily(
            "factory_scheduler_lease_renewed_timestamp_seconds",
            "When the leading beat replica last renewed the scheduler lease (Unix time).",
        )
        renewed.add_metric([], now.renewed_at.timestamp())
        yield renewed


def broker_queues() -> Iterable[Metric]:
    """Messages waiting in the Celery broker per queue. Hints only (the database is the truth,
    ``factory_workflow_steps_due`` the real backlog), but a growing queue means the workers
    are not keeping up, or are gone."""
    up = GaugeMetricFamily(
        "factory_celery_broker_up", "1 if the Celery broker answered this scrape, else 0."
    )
    length = GaugeMetricFamily(
        "factory_celery_queue_length", "Messages waiting in a Celery queue.", labels=["queue"]
    )
    url = settings.CELERY_BROKER_URL
    try:
        for queue in _queue_names():
            length.add_metric([queue], _queue_length(url, queue))
    except (redis.RedisError, OSError):
        up.add_metric([], 0.0)
    else:
        up.add_metric([], 1.0)
        yield length
    yield up


def _queue_names() -> list[str]:
    names = {settings.CELERY_TASK_DEFAULT_QUEUE}
    for queue in getattr(settings, "CELERY_TASK_QUEUES", None) or ():
        names.add(getattr(queue, "name", str(queue)))
    return sorted(names)


def _queue_length(url: str, queue: str) -> int:
    if url.startswith(("redis://", "rediss://", "unix://")):
        client = _redis(url)
        keys = [queue, *(f"{queue}{_PRIORITY_SEP}{step}" for step in _PRIORITY_STEPS)]
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.llen(key)
            return sum(pipe.execute())
    if url.startswith("filesystem://"):
        folder = Path(str(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]))
        if not folder.is_dir():  # nothing was ever sent
            return 0
        suffix = f".{queue}.msg"
        return sum(1 for name in os.listdir(folder) if name.endswith(suffix))
    raise OSError(f"queue length of a {url.split(':', 1)[0]} broker is not read")


@cache
def _redis(url: str) -> redis.Redis:
    """One client per process: a scrape must not open a connection each time."""
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
