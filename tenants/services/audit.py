"""Writing the audit log. Called by the change services, never by views directly."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from django.db import models
from django.db.backends.utils import format_number

from tenants.access import Actor
from tenants.choices import AuditAction, AuditSource
from tenants.models import AuditEvent

if TYPE_CHECKING:
    from tenants.services.changes import ChangeContext


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)


def snapshot(instance: models.Model) -> dict[str, Any]:
    """The stored values of an object's own fields, JSON-safe, minus secrets (``audit_exclude``)
    and with the partly secret ones cut down (``audit_redact``: field name → function)."""
    exclude: Collection[str] = getattr(instance, "audit_exclude", frozenset())
    redact: Mapping[str, Callable[[Any], Any]] = getattr(instance, "audit_redact", {})
    values: dict[str, Any] = {}
    for f in instance._meta.concrete_fields:
        if f.name in exclude or f.attname in exclude:
            continue
        value = getattr(instance, f.attname)
        if f.name in redact and value:
            value = redact[f.name](value)
        if isinstance(f, models.DecimalField) and value is not None:
            # As stored ("2500.0"), not as typed ("2500"): before and after compare equal.
            value = format_number(decimal.Decimal(value), f.max_digits, f.decimal_places)
        values[f.attname] = _json_safe(value)
    return values


#: The cause of the changes made inside ``acting_for``: a scheduled job's run, an agent's request.
_AMBIENT: ContextVar[ChangeContext | None] = ContextVar("audit_cause", default=None)


@contextmanager
def acting_for(ctx: ChangeContext) -> Iterator[None]:
    """Changes recorded inside that name no cause of their own take ``ctx``'s (cause, person
    and request id): what a job run or an agent's report sets off, however deep the service
    that writes it and whatever context it was handed. A cause named explicitly (a workflow's,
    a fault's) stays: it is the nearer one."""
    token = _AMBIENT.set(ctx)
    try:
        yield
    finally:
        _AMBIENT.reset(token)


def current_cause() -> ChangeContext | None:
    """The context ``acting_for`` set, if any."""
    return _AMBIENT.get()


class Cause(TypedDict, total=False):
    """What caused a change and who asked, beyond the actor: see ``ChangeContext``."""

    request_id: str
    on_behalf_of: str
    cause_type: str
    cause_id: str
    reason: str


class EventExtras(Cause, total=False):
    #: The tenant whose log the event is in; by default the object's owning tenant.
    tenant_id: int | None


def _event(
    *,
    actor: Actor,
    action: AuditAction | str,
    instance: models.Model,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    source: AuditSource | str,
    **extras: Unpack[EventExtras],
) -> AuditEvent:
    """The unsaved event ``record`` and ``record_many`` write: one place for the defaults
    (the object's owning tenant, the ambient cause) and the columns' lengths."""
    tenant_id = extras.get("tenant_id")
    if tenant_id is None:
        tenant_id = getattr(instance, "owning_tenant_id", None)
    request_id = extras.get("request_id", "")
    on_behalf_of = extras.get("on_behalf_of", "")
    cause_type = extras.get("cause_type", "")
    cause_id = extras.get("cause_id", "")
    ambient = _AMBIENT.get()
    if not cause_type and ambient is not None:
        cause_type, cause_id = ambient.cause_type, ambient.cause_id
        on_behalf_of = on_behalf_of or ambient.on_behalf_of
        request_id = request_id or ambient.request_id
    return AuditEvent(
        actor_id=actor.user_id,
        actor_username=actor.username,
        source=source,
        action=action,
        object_type=instance._meta.label_lower,
        object_id=str(instance.pk),
        object_repr=str(instance)[:200],
        tenant_id=tenant_id,
        before=before,
        after=after,
        request_id=request_id[:64],
        on_behalf_of=on_behalf_of[:150],
        cause_type=cause_type,
        cause_id=str(cause_id)[:64],
        reason=extras.get("reason", "")[:500],
    )


def record(
    *,
    actor: Actor,
    action: AuditAction | str,
    instance: models.Model,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    source: AuditSource | str,
    **extras: Unpack[EventExtras],
) -> AuditEvent:
    """Append one event. ``on_behalf_of``/``cause_type``/``cause_id``: what caused a change the
    control plane made itself (see ``ChangeContext``); without a cause, the one ``acting_for``
    set applies. ``reason``: why, as a person gave it."""
    event = _event(
        actor=actor,
        action=action,
        instance=instance,
        before=before,
        after=after,
        source=source,
        **extras,
    )
    event.save(force_insert=True)
    return event


def record_many(
    changes: Iterable[tuple[models.Model, dict[str, Any] | None, dict[str, Any] | None]],
    *,
    actor: Actor,
    action: AuditAction | str,
    source: AuditSource | str,
    **extras: Unpack[EventExtras],
) -> list[AuditEvent]:
    """Append one event per ``(instance, before, after)`` in one insert, with exactly the
    fields ``record`` would write for each (its owning tenant, the ambient cause, the
    columns' lengths): a bulk change costs the same queries for 2 objects as for 200. A
    ``tenant_id`` given files every one in that tenant's log."""
    events = [
        _event(
            actor=actor,
            action=action,
            instance=instance,
            before=before,
            after=after,
            source=source,
            **extras,
        )
        for instance, before, after in changes
    ]
    return AuditEvent.objects.bulk_create(events) if events else []


def record_change(
    ctx: ChangeContext, instance: models.Model, before: dict[str, Any] | None
) -> AuditEvent:
    """Record ``instance`` as it now stands: a create when ``before`` is None, else an update.
    ``ctx`` is the change's ``ChangeContext``."""
    return record(
        actor=ctx.actor,
        action=AuditAction.CREATE if before is None else AuditAction.UPDATE,
        instance=instance,
        before=before,
        after=snapshot(instance),
        source=ctx.source,
        request_id=ctx.request_id,
        **ctx.attribution(),
    )
