"""Writing events: one call, inside the transaction of the change it reports.

``emit`` writes the event and, for every active subscription of the tenant that wants its kind,
the webhook delivery: the three commit or vanish together, so there is never an event a
subscriber will not be sent, nor a delivery of a change that was rolled back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog
from celery import current_app
from django.db import models, transaction

from tenants.events.delivery import DELIVER_TASK
from tenants.events.kinds import EventKind
from tenants.events.models import Event, WebhookDelivery, WebhookSubscription

logger = structlog.get_logger(__name__)


def _tenant_id(tenant: models.Model | int | None) -> int | None:
    if tenant is None or isinstance(tenant, int):
        return tenant
    return int(tenant.pk)


def emit(
    kind: EventKind,
    subject: models.Model,
    *,
    tenant: models.Model | int | None,
    data: dict[str, Any] | None = None,
    name: str | None = None,
) -> Event:
    """Record that ``kind`` happened to ``subject`` (call it inside the change's transaction)."""
    event = Event.objects.create(
        kind=kind.value,
        tenant_id=_tenant_id(tenant),
        subject_type=subject._meta.model_name or type(subject).__name__.lower(),
        subject_id=str(subject.pk),
        subject_name=(name if name is not None else str(subject))[:200],
        data=data or {},
    )
    wake_deliveries([d.pk for d in fan_out(event)])
    return event


def fan_out(event: Event) -> list[WebhookDelivery]:
    """A pending delivery for each of the tenant's active subscriptions that wants the kind."""
    if event.tenant_id is None:
        return []
    subscriptions = WebhookSubscription.objects.filter(tenant_id=event.tenant_id, is_active=True)
    deliveries = [
        WebhookDelivery(subscription=s, event=event, next_attempt_at=event.occurred_at)
        for s in subscriptions
        if s.wants(event.kind)
    ]
    return WebhookDelivery.objects.bulk_create(deliveries)


def hint_deliveries(delivery_ids: Iterable[int]) -> None:
    """Send one ``events.deliver_webhook`` hint per delivery, by task name (the project's
    Celery app; this layer imports no task module). A lost hint is logged, never raised: the
    sweep finds every due delivery in the database anyway."""
    for delivery_id in delivery_ids:
        try:
            current_app.send_task(DELIVER_TASK, args=[delivery_id], ignore_result=True)
        except Exception as exc:  # the broker is a hint channel, not the truth
            logger.warning(
                "webhook hint lost; the sweep will send it", delivery=delivery_id, error=str(exc)
            )


def wake_deliveries(delivery_ids: list[int]) -> None:
    """Hint the workers once the emitting transaction has committed (before, a worker would
    not see the rows; after a rollback there is nothing to send)."""
    if delivery_ids:
        transaction.on_commit(lambda: hint_deliveries(delivery_ids))


def event_payload(event: Event) -> dict[str, Any]:
    """The one JSON shape of an event: list items, SSE data and webhook bodies alike."""
    return {
        "id": event.sequence,
        "kind": event.kind,
        "occurred_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "tenant": event.tenant.slug if event.tenant_id and event.tenant else None,
        "subject": {
            "type": event.subject_type,
            "id": event.subject_id,
            "name": event.subject_name,
        },
        "data": event.data,
    }
