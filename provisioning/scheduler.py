"""Celery beat that can run twice: replicas share one lease, and only its holder sends the
scheduled jobs (reconciler, sweeps, window openings), so losing one replica loses nothing.

The lease is a row (``SchedulerLease``) renewed by its holder every third of
``SCHEDULER_LEASE_SECONDS``; a standby takes it once it has run out, by the database's clock
(one UPDATE whose WHERE only one replica can satisfy). A holder that fails to renew stops
sending at once, two thirds of a lease before anyone else may start. A graceful stop gives the
lease back, so the standby takes over within a third of a lease. Runs of one job never overlap
in any case (``jobruns.sole_run``).

Readiness (``/readyz/scheduler``) and ``factory_scheduler_up`` read the same row: no holder
renewing within a lease means no scheduler at all.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import time
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.db import DatabaseError, IntegrityError, close_old_connections, transaction
from django.db.models import DateTimeField, ExpressionWrapper, Value
from django.db.models.functions import Now
from django_celery_beat.schedulers import DatabaseScheduler

from provisioning.models import SchedulerLease

logger = structlog.get_logger(__name__)

BEAT = "beat"  # the lease's name: the one role beat replicas share


def lease_seconds() -> float:
    return float(settings.SCHEDULER_LEASE_SECONDS)


def renew_every() -> float:
    """How often the holder renews, and a standby looks for a lease run out."""
    return lease_seconds() / 3


def _in(seconds: float) -> ExpressionWrapper:
    """The database's now plus ``seconds``."""
    return ExpressionWrapper(
        Now() + Value(dt.timedelta(seconds=seconds)), output_field=DateTimeField()
    )


def hold(holder: str, name: str = BEAT) -> bool:
    """Renew ``holder``'s lease, or take it if it has run out or was never held; whether
    ``holder`` holds it now."""
    ttl = lease_seconds()
    leases = SchedulerLease.objects.filter(name=name)
    if leases.filter(holder=holder).update(renewed_at=Now(), expires_at=_in(ttl)):
        return True
    taken = leases.filter(expires_at__lt=Now()).update(
        holder=holder, since=Now(), renewed_at=Now(), expires_at=_in(ttl)
    )
    if taken:
        return True
    if leases.exists():
        return False
    try:
        with transaction.atomic():
            SchedulerLease.objects.create(
                name=name, holder=holder, since=Now(), renewed_at=Now(), expires_at=_in(ttl)
            )
    except IntegrityError:  # another replica created it first
        return False
    return True


def release(holder: str, name: str = BEAT) -> None:
    """Give the lease back (a graceful stop), so a standby need not wait for it to run out."""
    SchedulerLease.objects.filter(name=name, holder=holder).update(expires_at=Now())


@dataclass(frozen=True)
class SchedulerState:
    holder: str | None  # None: no replica has ever held the lease
    renewed_seconds_ago: float | None
    renewed_at: dt.datetime | None

    @property
    def up(self) -> bool:
        """A replica renewed within one lease: jobs are being sent."""
        return self.renewed_seconds_ago is not None and self.renewed_seconds_ago <= lease_seconds()


def state(name: str = BEAT) -> SchedulerState:
    row = SchedulerLease.objects.filter(name=name).annotate(db_now=Now()).first()
    if row is None:
        return SchedulerState(None, None, None)
    age = max(0.0, (row.db_now - row.renewed_at).total_seconds())  # type: ignore[attr-defined]
    return SchedulerState(row.holder, age, row.renewed_at)


def check() -> str | None:
    """For readiness: None when a replica is sending the scheduled jobs, else why not."""
    now = state()
    if now.holder is None:
        return "no scheduler (celery beat) has run"
    if not now.up:
        return (
            f"stale: the scheduler last renewed its lease {now.renewed_seconds_ago:.0f} s ago "
            f"(more than {lease_seconds():.0f} s; holder {now.holder})"
        )
    return None


class LeaderScheduler(DatabaseScheduler):
    """django-celery-beat's scheduler, sending only while it holds the lease. Run as many
    replicas as you like (``CELERY_BEAT_SCHEDULER``); the others stand by."""

    def __init__(self, *args, **kwargs) -> None:
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.leading = False
        self._lead_until = 0.0  # monotonic: trust the last renewal until then
        super().__init__(*args, **kwargs)
        # Tick at least as often as the lease needs renewing.
        self.max_interval = min(self.max_interval, renew_every())

    def tick(self, *args, **kwargs):
        if not self._leads():
            return renew_every()
        return super().tick(*args, **kwargs)

    def apply_entry(self, entry, producer=None):
        """Send only while the lease is still ours: the tick's check may be seconds old by now
        (a slow database read or broker in between), and the standby may have taken over."""
        if time.monotonic() >= self._lead_until and not self._leads():
            self._dirty.discard(entry.name)  # not sent: its last run stays as the leader wrote it
            logger.warning("scheduler_send_skipped_not_leading", entry=entry.name)
            return
        super().apply_entry(entry, producer=producer)

    def _leads(self) -> bool:
        now = time.monotonic()
        if self.leading and now < self._lead_until:
            return True
        try:
            held = hold(self.holder)
        except DatabaseError:
            logger.warning("scheduler_lease_unreachable", holder=self.holder, exc_info=True)
            close_old_connections()
            held = False
        if held and not self.leading:
            logger.info("scheduler_leading", holder=self.holder)
            # What the schedule is now, not what it was when this replica started or last led:
            # re-read the rows (the last runs the other replica wrote, jobs disabled meanwhile).
            self._initial_read = True
            self._heap = None
        elif self.leading and not held:
            logger.warning("scheduler_lost_lease", holder=self.holder)
            self._dirty.clear()  # the new leader's runs are the truth now
        self.leading = held
        self._lead_until = now + renew_every() if held else 0.0
        return held

    def close(self) -> None:
        if self.leading:
            self.sync()  # the last runs written before the standby reads them
            try:
                release(self.holder)
            except DatabaseError:
                logger.warning("scheduler_lease_not_released", holder=self.holder)
            self.leading = False
        super().close()
