"""The audit log: append-only at every layer.

The ORM refuses updates and deletes (model and queryset); the admin and API offer none; and a
database trigger (migration 0002) refuses UPDATE and DELETE even from raw SQL. Actor and tenant
are stored as plain values, not foreign keys, so deleting a person or tenant can never cascade
into (or be blocked by) the history.

The trigger stops mistakes, not a database superuser, so the log is also hash-chained per tenant
(``ChainedModel``): each row carries its chain position, the previous row's hash and its own
digest over the canonical form of ``tenants/ledger/verify_pack.py``, linked in the inserting
transaction under a per-chain advisory lock. Signed checkpoints (``Checkpoint``, by a
``LedgerKey``) pin each chain's head, so an edit, deletion, reordering or truncation shows.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from django.db import connections, models, transaction
from django.utils import timezone

from tenants.choices import AuditAction, AuditCause, AuditSource
from tenants.errors import Denied
from tenants.ledger.verify_pack import GENESIS, digest, format_time, unset_later_field


class AppendOnlyError(Denied):
    """Raised on any attempt to change or remove an audit event (403: nobody may)."""

    default_code = "append_only"


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model._meta.verbose_name_plural} cannot be updated")

    def delete(self):
        raise AppendOnlyError(f"{self.model._meta.verbose_name_plural} cannot be deleted")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AppendOnlyError(f"{self.model._meta.verbose_name_plural} cannot be updated")

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        if not issubclass(self.model, ChainedModel):
            return super().bulk_create(objs, *args, **kwargs)
        with transaction.atomic(using=self.db, savepoint=False):
            link(self.model, objs, self.db)
            return super().bulk_create(objs, *args, **kwargs)


class AppendOnlyModel(models.Model):
    """Rows are written once. (A database trigger per table guards raw SQL as well.)"""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(f"{self._meta.verbose_name_plural} cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{self._meta.verbose_name_plural} cannot be deleted")


# --- The hash chain ---------------------------------------------------------------------------

CHAIN_FIELDS = ("chain_seq", "prev_hash", "record_hash")


class ChainedModel(AppendOnlyModel):
    """An append-only row linked into its tenant's chain (``tenant_id`` NULL: the provider's).

    Every insert path (``save``, ``objects.create``, ``bulk_create``) links in the inserting
    transaction; a raw INSERT without the chain columns fails (they are NOT NULL), and the
    unique (chain, seq) constraint refuses a fork even if the lock were bypassed.
    """

    ledger_log: ClassVar[str]  # the log's name in the canonical form: "audit", "decision"
    ledger_lock: ClassVar[int]  # advisory-lock class id of this log's chains

    chain_seq = models.BigIntegerField(editable=False)
    prev_hash = models.CharField(max_length=64, editable=False)
    record_hash = models.CharField(max_length=64, editable=False)

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(f"{self._meta.verbose_name_plural} cannot be updated")
        using = kwargs.get("using") or "default"
        with transaction.atomic(using=using, savepoint=False):  # no extra round trips
            link(type(self), [self], using)
            kwargs["force_insert"] = True
            super().save(*args, **kwargs)

    def ledger_fields(self) -> dict[str, Any]:
        """This row as the verifier sees it (``ledger_content``) plus its ``hash``."""
        return {**ledger_content(type(self), self.__dict__), "hash": self.record_hash}


def _as_jsonb(text: str) -> float | int:
    """A JSON number as PostgreSQL's jsonb gives it back: ``1e+20`` comes back as an integer."""
    return int(Decimal(text)) if "e+" in text.lower() else float(text)


def ledger_content(
    model: type[models.Model], values: dict[str, Any], log: str | None = None
) -> dict[str, Any]:
    """The hashed fields of a row, from its attribute values (an instance's ``__dict__`` or a
    ``.values()`` row), normalised to what the database gives back. Read from the model's
    fields generically, so a column added later is covered without touching this. A column the
    log gained after records were chained (``verify_pack.ADDED_LATER``) is left out while it is
    empty, so old records keep their digests and exported ones read as an older verifier
    expects. (``log``: for a migration's historical model, which has no ``ledger_log``.)"""
    out: dict[str, Any] = {"log": log or model.ledger_log}  # type: ignore[attr-defined]
    for f in model._meta.concrete_fields:
        if f.attname == "record_hash":
            continue
        value = values.get(f.attname)
        if unset_later_field(out["log"], f.attname, value):
            continue
        if value is None:
            out[f.attname] = None
        elif isinstance(f, models.DateTimeField):
            when = f.to_python(value)
            if timezone.is_naive(when):  # as Django will store it: in the current time zone
                when = timezone.make_aware(when)
            out[f.attname] = format_time(when)
        elif isinstance(f, models.JSONField):
            out[f.attname] = json.loads(json.dumps(value, cls=f.encoder), parse_float=_as_jsonb)
        else:
            out[f.attname] = f.to_python(value)
    return out


def _lock_key(tenant_id: int | None) -> int:
    return zlib.crc32(str(tenant_id).encode()) - 2**31


def lock_chains(
    model: type[ChainedModel], tenant_ids: Iterable[int | None], using: str = "default"
) -> None:
    """Take the chain locks a transaction will need, all at once, in the one global order
    (lock key, then chain), before its first write to any of them.

    ``link`` orders the chains of one call, but a transaction that writes to chain A and then,
    in a later call, to chain B can deadlock (40P01) with one writing B then A. A service that
    writes into several chains in one transaction calls this first; the advisory locks are
    re-entrant, so ``link`` taking them again later costs nothing and waits for nobody."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return  # SQLite: one writer at a time
    keys = sorted({(_lock_key(t), -1 if t is None else t) for t in tenant_ids})
    with connection.cursor() as cursor:
        for key, _ in keys:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [model.ledger_lock, key])


def _head(model: type[ChainedModel], cursor, vendor: str, tenant_id: int | None, fresh: int):
    """Lock the chain; its head (seq, hash) and ``fresh`` new primary keys, taken before the
    insert so that the digest covers the id. On PostgreSQL one round trip: ``ledger_link``
    (migration tenants 0004), a VOLATILE function whose head query takes a fresh snapshot
    after the lock, so it sees the previous holder's committed row."""
    table = model._meta.db_table
    if vendor == "postgresql":
        key = _lock_key(tenant_id)
        cursor.execute(
            "SELECT * FROM ledger_link(%s, %s, %s::regclass, %s::bigint, %s)",
            [model.ledger_lock, key, table, tenant_id, fresh],
        )
        seq, head, ids = cursor.fetchone()
        return (seq or 0, head or GENESIS), list(ids or [])
    where = "tenant_id IS NULL" if tenant_id is None else "tenant_id = %s"
    cursor.execute(
        f"SELECT chain_seq, record_hash FROM {table} WHERE {where} ORDER BY chain_seq DESC LIMIT 1",
        [] if tenant_id is None else [tenant_id],
    )
    found = cursor.fetchone()
    cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}")
    top = cursor.fetchone()[0]  # SQLite: one writer at a time (IMMEDIATE transactions)
    return (tuple(found) if found else (0, GENESIS)), list(range(top + 1, top + 1 + fresh))


def link(model: type[ChainedModel], objs: Sequence[ChainedModel], using: str) -> None:
    """Give each new row its id, chain position, previous hash and digest, chain by chain.

    Must run inside the inserting transaction: the per-chain advisory lock is held to commit,
    so the next writer of the chain reads this row as its head (READ COMMITTED).
    """
    connection = connections[using]
    chains: dict[int | None, list[ChainedModel]] = {}
    for obj in objs:
        chains.setdefault(obj.tenant_id, []).append(obj)  # type: ignore[attr-defined]
    with connection.cursor() as cursor:
        # The lock order of lock_chains: one call never deadlocks with another.
        for tenant_id in sorted(chains, key=lambda t: (_lock_key(t), -1 if t is None else t)):
            members = chains[tenant_id]
            fresh = [o for o in members if o.pk is None]
            (seq, prev), ids = _head(model, cursor, connection.vendor, tenant_id, len(fresh))
            for obj, pk in zip(fresh, ids, strict=True):
                obj.pk = pk
            for obj in members:
                seq += 1
                obj.chain_seq, obj.prev_hash = seq, prev
                obj.record_hash = prev = digest(ledger_content(model, obj.__dict__))


def chain_filter(tenant_id: int | None) -> models.Q:
    return models.Q(tenant_id__isnull=True) if tenant_id is None else models.Q(tenant_id=tenant_id)


def chain_constraints(name: str) -> list[models.BaseConstraint]:
    """One row per (chain, seq): NULL (the provider's chain) counts as one chain."""
    return [
        models.UniqueConstraint(
            fields=["tenant_id", "chain_seq"], name=f"{name}_chain_seq", nulls_distinct=False
        )
    ]


class AuditEvent(ChainedModel):
    ledger_log = "audit"
    ledger_lock = 14001

    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    actor_username = models.CharField(max_length=150, blank=True)
    source = models.CharField(max_length=16, choices=AuditSource.choices)
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    object_type = models.CharField(max_length=100, db_index=True)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    tenant_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    # Added later (hashed only when set: ``verify_pack.ADDED_LATER``). Who and what caused a
    # change the control plane made itself: the person who started or approved it, and the
    # workflow, job run, rule's fault or agent it was made for.
    on_behalf_of = models.CharField(
        max_length=150, blank=True, help_text="The person who started or approved the cause."
    )
    cause_type = models.CharField(max_length=16, choices=AuditCause.choices, blank=True)
    cause_id = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=500, blank=True, help_text="Why, as a person gave it.")

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object_idx"),
            models.Index(fields=["cause_type", "cause_id"], name="audit_cause_idx"),
        ]
        constraints = chain_constraints("audit")

    def __str__(self) -> str:
        when = f"{self.occurred_at:%Y-%m-%d %H:%M:%S}"
        return f"{when} {self.actor_username} {self.action} {self.object_repr}"

    @property
    def changed_fields(self) -> list[str]:
        before, after = self.before or {}, self.after or {}
        return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


# --- Signed checkpoints -----------------------------------------------------------------------


class LedgerKey(AppendOnlyModel):
    """A ledger signing key's public half. Kept for ever, so old checkpoints and packs still
    verify after rotation; the private half stays in ``LEDGER_SIGNING_KEY_FILE``."""

    key_id = models.CharField(max_length=64, unique=True)
    public_key_pem = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.key_id


class Checkpoint(AppendOnlyModel):
    """A signed head of one chain: (log, chain, seq, head hash, time), Ed25519 by ``key_id``."""

    log = models.CharField(max_length=16)
    tenant_id = models.BigIntegerField(null=True, blank=True)
    seq = models.BigIntegerField()
    head_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    key_id = models.CharField(max_length=64)
    signature = models.TextField(help_text="base64 Ed25519 over the canonical payload")

    class Meta:
        ordering = ["log", "tenant_id", "seq", "id"]
        indexes = [models.Index(fields=["log", "tenant_id", "seq"], name="checkpoint_chain_idx")]

    def __str__(self) -> str:
        return f"{self.log}/{self.tenant_id}@{self.seq}"

    def payload_fields(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "head_hash": self.head_hash,
            "created_at": format_time(self.created_at),
            "key_id": self.key_id,
            "signature": self.signature,
        }


def ledger_models() -> Iterable[type[ChainedModel]]:
    """Every chained log (the decision log registers itself by subclassing)."""
    from django.apps import apps

    return [m for m in apps.get_models() if issubclass(m, ChainedModel)]
