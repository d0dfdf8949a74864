"""Celery tasks of placement: thin hints by stable name (beat's row in migration 0002)."""

from __future__ import annotations

from celery import shared_task

from provisioning.placement import jobs


@shared_task(name="placement.advance_reservations", acks_late=True, ignore_result=True)
def advance_reservations() -> dict:
    return jobs.advance_reservations()
