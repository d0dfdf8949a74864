"""Validated, audited, all-or-nothing changes: the one path for every write (API and admin).

Each change runs in a transaction: the stored row is locked and snapshotted, the model's
``full_clean()`` runs (the single home of validation), the row is saved and the audit event is
written. Any error rolls all of it back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, TypedDict, TypeVar

from django.db import models, transaction

from tenants.access import Actor
from tenants.choices import AuditAction, AuditSource
from tenants.services import audit

M = TypeVar("M", bound=models.Model)


class Attribution(TypedDict):
    """The cause fields of an audit event (``audit.record``'s keywords)."""

    on_behalf_of: str
    cause_type: str
    cause_id: str


@dataclass(frozen=True)
class ChangeContext:
    """Who is changing things, through what, under which request id; and, for a change the
    control plane makes itself, what caused it (``cause_type``: an ``AuditCause``, and
    ``cause_id``) on behalf of whom (the person who started or approved that cause). Every
    audit event written under this context carries all of it."""

    actor: Actor
    source: AuditSource | str = AuditSource.SYSTEM
    request_id: str = ""
    on_behalf_of: str = ""
    cause_type: str = ""
    cause_id: str = ""

    def caused_by(
        self,
        cause_type: str,
        cause_id: object = "",
        *,
        on_behalf_of: str | None = None,
        request_id: str | None = None,
    ) -> ChangeContext:
        """This context for the changes one cause makes (a workflow, a job run, a fault)."""
        return replace(
            self,
            cause_type=str(cause_type),
            cause_id="" if cause_id is None else str(cause_id)[:64],
            on_behalf_of=self.on_behalf_of if on_behalf_of is None else on_behalf_of[:150],
            request_id=self.request_id if request_id is None else request_id[:64],
        )

    def attribution(self) -> Attribution:
        """The cause fields, as ``audit.record`` takes them."""
        return {
            "on_behalf_of": self.on_behalf_of,
            "cause_type": self.cause_type,
            "cause_id": self.cause_id,
        }


@dataclass
class Precondition:
    """A check on one stored row, made once the change holds that row's lock."""

    model: type[models.Model]
    pk: Any
    check: Callable[[models.Model], None]
    checked: bool = False


_PRECONDITIONS: ContextVar[tuple[Precondition, ...]] = ContextVar("preconditions", default=())


@contextmanager
def precondition(
    instance: models.Model, check: Callable[[models.Model], None]
) -> Iterator[Precondition]:
    """While inside, ``save_object`` / ``delete_object`` call ``check(stored)`` on
    ``instance``'s row as soon as they hold its lock, before anything is written (once, however
    many changes the service makes). ``check`` raises (e.g. ``PreconditionFailed``) to refuse:
    two writers that both expect the same version cannot both win. ``checked`` says whether
    it ran."""
    model = type(instance)._meta.concrete_model
    assert model is not None  # a saved model's row
    entry = Precondition(model, instance.pk, check)
    token = _PRECONDITIONS.set((*_PRECONDITIONS.get(), entry))
    try:
        yield entry
    finally:
        _PRECONDITIONS.reset(token)


def check_preconditions(stored: models.Model) -> None:
    """Run the preconditions on ``stored``'s row, which the caller has just locked: what
    ``save_object`` and ``delete_object`` do, for a service that locks and writes a row
    itself (a workflow's pause, resume, cancel)."""
    for entry in _PRECONDITIONS.get():
        model = stored._meta.concrete_model
        if not entry.checked and entry.model is model and entry.pk == stored.pk:
            entry.check(stored)
            entry.checked = True


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
            check_preconditions(stored)
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
                **ctx.attribution(),
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
        check_preconditions(stored)
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
            **ctx.attribution(),
        )
