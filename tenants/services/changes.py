"""Validated, audited, all-or-nothing changes: the one path for every write (API and admin).

Each change runs in a transaction: the stored row is locked and snapshotted, the model's
``full_clean()`` runs (the single home of validation), the row is saved and the audit event is
written. Any error rolls all of it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.db import models, transaction

from tenants.access import Actor
from tenants.choices import AuditAction, AuditSource
from tenants.services import audit

M = TypeVar("M", bound=models.Model)


@dataclass(frozen=True)
class ChangeContext:
    """Who is changing things, through what, under which request id."""

    actor: Actor
    source: AuditSource | str = AuditSource.SYSTEM
    request_id: str = ""


def save_object(
    instance: M,
    ctx: ChangeContext,
    *,
    after_save: Callable[[M, bool], None] | None = None,
) -> M:
    with transaction.atomic():
        creating = instance._state.adding or instance.pk is None
        # Models whose validation reads shared budgets lock those rows first, in a fixed order.
        lock = getattr(instance, "lock_for_change", None)
        if callable(lock):
            lock()
        before = None
        if not creating:
            stored = type(instance)._base_manager.select_for_update().get(pk=instance.pk)
            before = audit.snapshot(stored)
        instance.full_clean()
        instance.save()
        if after_save is not None:
            after_save(instance, creating)
        after = audit.snapshot(instance)
        if before != after:
            audit.record(
                actor=ctx.actor,
                action=AuditAction.CREATE if creating else AuditAction.UPDATE,
                instance=instance,
                before=before,
                after=after,
                source=ctx.source,
                request_id=ctx.request_id,
            )
    return instance


def delete_object(
    instance: M,
    ctx: ChangeContext,
    *,
    before_delete: Callable[[M], None] | None = None,
) -> None:
    """Delete and record it. Objects still in use raise ProtectedError (a 409 in the API)."""
    with transaction.atomic():
        lock = getattr(instance, "lock_for_change", None)
        if callable(lock):
            lock()
        stored = type(instance)._base_manager.select_for_update().get(pk=instance.pk)
        if before_delete is not None:
            before_delete(stored)
        before = audit.snapshot(stored)
        tenant_id = getattr(stored, "owning_tenant_id", None)
        pk = stored.pk
        stored.delete()
        stored.pk = pk  # so the event names what was deleted
        audit.record(
            actor=ctx.actor,
            action=AuditAction.DELETE,
            instance=stored,
            before=before,
            after=None,
            source=ctx.source,
            request_id=ctx.request_id,
            tenant_id=tenant_id,
        )
