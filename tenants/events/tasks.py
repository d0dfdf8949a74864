"""Webhook tasks: thin, idempotent, acks-late hints to look at the database.

Registered by Celery's autodiscovery under stable names (``tenants.events.delivery``), which the
emitting services and beat's row send by: nothing imports this module.
"""

from __future__ import annotations

from celery import shared_task

from tenants.events import webhooks
from tenants.events.delivery import DELIVER_TASK, SWEEP_TASK


@shared_task(name=DELIVER_TASK, acks_late=True, ignore_result=True)
def deliver_webhook(delivery_id: int) -> str:
    return webhooks.deliver(delivery_id)


@shared_task(name=SWEEP_TASK, acks_late=True, ignore_result=True)
def sweep_webhooks() -> dict[str, int]:
    return webhooks.sweep()
