"""Step leases that a live worker keeps and a lost one loses within seconds.

A claimed step is RUNNING under a lease (``WORKFLOW_LEASE_SECONDS``, 15 by default). While a
worker acts on it the step's row is locked (``runner._StepBatch``), and recovery skips locked
rows (``recover_expired_leases``: ``SKIP LOCKED``), so a live worker's step is never taken from
it however long it runs. The lease matters only while the row is not locked: between the claim's
commit and the act, and while a broken batch's steps wait to be run one by one. There a live
worker keeps its leases by heartbeat: a thread in each worker process renews the leases of the
steps that process is running every third of a lease (``LeaseHeartbeat``). A worker killed
mid-step renews nothing: its steps' leases run out within one lease, and the reconciler's next
pass (every 10 s) hands them back. Lost-worker cost: lease + reconciler period, not 60–70 s.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable

import structlog
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from provisioning.choices import StepState
from provisioning.models import Step

logger = structlog.get_logger(__name__)

_lock = threading.Lock()
_running: dict[int, str] = {}  # step id → owner: the steps this process is running now


def lease_seconds() -> float:
    return float(settings.WORKFLOW_LEASE_SECONDS)


def running(step_ids: Iterable[int], owner: str) -> None:
    """This process now runs ``step_ids`` under ``owner``'s leases: keep them alive."""
    with _lock:
        for step_id in step_ids:
            _running[step_id] = owner


def done(step_ids: Iterable[int]) -> None:
    with _lock:
        for step_id in step_ids:
            _running.pop(step_id, None)


def in_process() -> dict[int, str]:
    with _lock:
        return dict(_running)


def renew(step_ids: Iterable[int], owner: str, now: dt.datetime | None = None) -> list[int]:
    """Push out the leases ``owner`` holds on ``step_ids``; rows locked now (being acted on,
    so safe from recovery) are skipped. The steps renewed."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            Step.objects.select_for_update(skip_locked=True)
            .filter(pk__in=list(step_ids), state=StepState.RUNNING, lease_owner=owner)
            .values_list("pk", flat=True)
        )
        if ids:
            Step.objects.filter(pk__in=ids).update(
                lease_expires_at=now + dt.timedelta(seconds=lease_seconds())
            )
    return ids


def beat_once() -> int:
    """Renew every lease this process holds; how many were renewed."""
    by_owner: dict[str, list[int]] = {}
    for step_id, owner in in_process().items():
        by_owner.setdefault(owner, []).append(step_id)
    return sum(len(renew(ids, owner)) for owner, ids in by_owner.items())


class LeaseHeartbeat(threading.Thread):
    """The worker process's heartbeat (its own database connection, as every thread has)."""

    def __init__(self) -> None:
        super().__init__(name="step-lease-heartbeat", daemon=True)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(lease_seconds() / 3):
            try:
                beat_once()
            except Exception:  # never let the heartbeat die: the next beat tries again
                logger.warning("step_lease_heartbeat_failed", exc_info=True)
                close_old_connections()
        connection.close()


_heartbeat: LeaseHeartbeat | None = None


def start_heartbeat() -> LeaseHeartbeat:
    """Start this process's heartbeat once (a Celery worker child calls it as it starts)."""
    global _heartbeat
    with _lock:
        if _heartbeat is None or not _heartbeat.is_alive():
            _heartbeat = LeaseHeartbeat()
            _heartbeat.start()
        return _heartbeat
