"""The hash-chained logs: every write path links, and a database superuser's edit, deletion,
reordering or truncation (trigger disabled) is named by verify as the first broken link."""

import os
import threading

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, connection, connections, models, transaction

from tenants.access import SYSTEM
from tenants.evidence import services
from tenants.evidence.keys import public_pem
from tenants.ledger.verify_pack import GENESIS, digest
from tenants.models import AuditEvent
from tenants.models.audit import Checkpoint
from tenants.services.audit import record
from tenants.sovereignty.models import DecisionRecord

AUDIT = "tenants_auditevent"


def log(tenant, n, **extra):
    """``n`` audit events in ``tenant``'s chain (through the service every change uses)."""
    return [
        record(
            actor=SYSTEM,
            action="update",
            instance=tenant,
            before={"n": i},
            after={"n": i + 1, "ratio": 0.5, "big": 1e20, "name": "Zoë"},
            source="api",
            **extra,
        )
        for i in range(n)
    ]


def decide(tenant_id, n):
    return [
        DecisionRecord.objects.create(
            tenant_id=tenant_id,
            action="place_asset",
            resource_type="asset",
            resource_id=str(i),
            resource_repr=f"asset {i}",
            allowed=bool(i % 2),
            rule_ids=["r-1"],
            reasons=["only in EU"],
        )
        for i in range(n)
    ]


def superuser(sql, params=(), table=AUDIT):
    """What a database superuser can do: lift the append-only trigger, change rows, restore."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
        cursor.execute(sql, params)
        cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER ALL")


def chain(tenant):
    return list(AuditEvent.objects.filter(tenant_id=tenant.pk).order_by("chain_seq"))


def first_problem(tenant_id=None):
    scope = None if tenant_id is None else [tenant_id]
    problems = [r.problem for r in services.verify_logs(scope) if r.problem]
    return problems[0] if problems else None


def test_each_record_links_to_the_previous_and_an_untouched_log_verifies(fleet):
    rows = log(fleet.alpha, 5)
    decide(fleet.alpha.pk, 3)
    seqs = [e.chain_seq for e in chain(fleet.alpha)]
    assert seqs == list(range(1, len(seqs) + 1))
    first = chain(fleet.alpha)[0]
    assert first.prev_hash == GENESIS
    for prev, cur in zip(chain(fleet.alpha), chain(fleet.alpha)[1:], strict=False):
        assert cur.prev_hash == prev.record_hash
    stored = AuditEvent.objects.get(pk=rows[-1].pk)
    assert digest(stored.ledger_fields()) == stored.record_hash == rows[-1].record_hash
    services.checkpoint()
    reports = services.verify_logs()
    assert reports and all(r.problem is None for r in reports)
    assert {(r.log, r.tenant_id) for r in reports} >= {
        ("audit", fleet.alpha.pk),
        ("audit", fleet.beta.pk),
        ("decision", fleet.alpha.pk),
    }
    assert all(r.checkpoints == 1 for r in reports)
    call_command("verify_logs")  # exits 0


def test_the_provider_chain_and_bulk_create_link_too(fleet):
    event = AuditEvent.objects.create(
        source="system", action="update", object_type="x.y", object_id="0", object_repr="p"
    )
    assert AuditEvent.objects.get(pk=event.pk).tenant_id is None
    made = AuditEvent.objects.bulk_create(
        [
            AuditEvent(
                source="api",
                action="create",
                object_type="x.y",
                object_id=str(i),
                object_repr=f"x{i}",
                tenant_id=tid,
            )
            for i, tid in enumerate([fleet.beta.pk, None, fleet.beta.pk])
        ]
    )
    assert [m.pk is not None for m in made] == [True] * 3
    assert first_problem() is None
    provider = AuditEvent.objects.filter(tenant_id__isnull=True).order_by("chain_seq")
    assert [e.chain_seq for e in provider] == list(range(1, provider.count() + 1))


def test_a_raw_insert_without_the_chain_is_refused(fleet):
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {AUDIT} (occurred_at, actor_username, source, action, object_type, "
            "object_id, object_repr, tenant_id, request_id) "
            "VALUES (now(), 'x', 'api', 'create', 'x', '1', 'x', %s, '')",
            [fleet.alpha.pk],
        )


def test_a_fork_is_refused_by_the_constraint(fleet):
    rows = log(fleet.alpha, 2)
    copy = AuditEvent(
        **{
            f.attname: getattr(rows[1], f.attname)
            for f in AuditEvent._meta.concrete_fields
            if f.attname != "id"
        }
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        models.Model.save(copy, force_insert=True)  # the plain save, past the linking


def test_an_edited_row_is_named(fleet):
    rows = log(fleet.alpha, 4)
    target = chain(fleet.alpha)[2]
    superuser(f"UPDATE {AUDIT} SET object_repr = 'nothing to see' WHERE id = %s", [target.pk])
    problem = first_problem(fleet.alpha.pk)
    assert (problem.log, problem.tenant_id, problem.kind) == ("audit", fleet.alpha.pk, "edited")
    assert (problem.seq, problem.record_id) == (target.chain_seq, target.pk)
    assert rows


def test_an_edited_json_value_is_named(fleet):
    log(fleet.alpha, 3)
    target = chain(fleet.alpha)[1]
    superuser(
        f"UPDATE {AUDIT} SET after = after || '{{\"ratio\": 0.25}}' WHERE id = %s", [target.pk]
    )
    problem = first_problem(fleet.alpha.pk)
    assert (problem.kind, problem.seq) == ("edited", target.chain_seq)


def test_a_deleted_row_is_a_gap(fleet):
    log(fleet.alpha, 4)
    target = chain(fleet.alpha)[2]
    superuser(f"DELETE FROM {AUDIT} WHERE id = %s", [target.pk])
    problem = first_problem(fleet.alpha.pk)
    assert (problem.kind, problem.seq) == ("deleted", target.chain_seq)
    assert "missing" in problem.detail


def test_reordered_rows_are_named(fleet):
    log(fleet.alpha, 4)
    a, b = chain(fleet.alpha)[1:3]
    for pk, seq in ((a.pk, -1), (b.pk, a.chain_seq), (a.pk, b.chain_seq)):  # swap positions
        superuser(f"UPDATE {AUDIT} SET chain_seq = %s WHERE id = %s", [seq, pk])
    problem = first_problem(fleet.alpha.pk)
    assert (problem.kind, problem.seq, problem.record_id) == ("reordered", a.chain_seq, b.pk)


def test_swapped_contents_of_two_rows_are_named(fleet):
    log(fleet.alpha, 4)
    a, b = chain(fleet.alpha)[1:3]
    fixed = {"id", "chain_seq", "prev_hash", "record_hash"}  # each row keeps its position
    columns = [f.column for f in AuditEvent._meta.concrete_fields if f.column not in fixed]
    sets = ", ".join(f"{c} = o.{c}" for c in columns)
    superuser(
        f"UPDATE {AUDIT} t SET {sets} FROM {AUDIT} o WHERE (t.id, o.id) IN ((%s, %s), (%s, %s))",
        [a.pk, b.pk, b.pk, a.pk],
    )
    problem = first_problem(fleet.alpha.pk)
    assert (problem.kind, problem.seq) == ("edited", a.chain_seq)


def test_a_truncated_tail_after_a_checkpoint_is_named(fleet):
    log(fleet.alpha, 5)
    services.checkpoint([fleet.alpha.pk])
    top = chain(fleet.alpha)[-1].chain_seq
    superuser(
        f"DELETE FROM {AUDIT} WHERE tenant_id = %s AND chain_seq >= %s", [fleet.alpha.pk, top - 1]
    )
    problem = first_problem(fleet.alpha.pk)
    assert (problem.kind, problem.seq) == ("truncated", top - 1)
    assert f"checkpoint at seq {top}" in problem.detail


def test_a_rewritten_chain_does_not_match_its_checkpoint(fleet):
    """Re-hashing the whole chain after an edit (an insider who knows the scheme) still fails
    against the signed head."""
    log(fleet.alpha, 3)
    services.checkpoint([fleet.alpha.pk])
    rows = chain(fleet.alpha)
    rows[-1].object_repr = "rewritten"
    fields = rows[-1].ledger_fields()
    fields["object_repr"] = "rewritten"
    superuser(
        f"UPDATE {AUDIT} SET object_repr = 'rewritten', record_hash = %s WHERE id = %s",
        [digest(fields), rows[-1].pk],
    )
    problem = first_problem(fleet.alpha.pk)
    assert (problem.kind, problem.seq) == ("checkpoint", rows[-1].chain_seq)


def test_a_forged_checkpoint_signature_is_named(fleet):
    log(fleet.alpha, 2)
    (cp,) = services.checkpoint([fleet.alpha.pk])[:1]
    superuser(
        "UPDATE tenants_checkpoint SET signature = %s WHERE id = %s",
        ["AAAA" + cp.signature[4:], cp.pk],
        table="tenants_checkpoint",
    )
    problem = first_problem(fleet.alpha.pk)
    assert problem.kind == "signature"


def test_the_decision_log_is_chained_and_checked(fleet):
    rows = decide(fleet.alpha.pk, 4)
    assert [r.chain_seq for r in rows] == [1, 2, 3, 4]
    superuser(
        "UPDATE sovereignty_decisionrecord SET allowed = NOT allowed WHERE id = %s",
        [rows[1].pk],
        table="sovereignty_decisionrecord",
    )
    problem = first_problem(fleet.alpha.pk)
    assert (problem.log, problem.kind, problem.seq) == ("decision", "edited", 2)


def test_checkpoints_are_append_only_and_only_for_moved_chains(fleet):
    log(fleet.alpha, 2)
    made = services.checkpoint([fleet.alpha.pk])
    assert len(made) == 1 and services.checkpoint([fleet.alpha.pk]) == []
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE tenants_checkpoint SET seq = 1")
    log(fleet.alpha, 1)
    assert len(services.checkpoint([fleet.alpha.pk])) == 1
    assert Checkpoint.objects.filter(tenant_id=fleet.alpha.pk).count() == 2


def test_the_key_file_is_created_0600_and_rotation_keeps_old_checkpoints_valid(
    fleet, ledger_key, settings
):
    """Changed for issue 14 review: after a rotation the retired public key must be pinned in
    ``LEDGER_TRUSTED_PUBLIC_KEYS``; until it is, the old checkpoints do not verify and no new
    checkpoint is signed over them (the LedgerKey table is not trusted)."""
    log(fleet.alpha, 1)
    services.checkpoint([fleet.alpha.pk])
    assert oct(os.stat(ledger_key).st_mode & 0o777) == "0o600"
    old = ledger_key.with_suffix(".old")
    ledger_key.rename(old)  # rotate: a new key on next use
    log(fleet.alpha, 1)
    assert services.checkpoint([fleet.alpha.pk]) == []  # refused: the old head is unpinned
    assert first_problem().kind == "signature"
    retired = old.with_suffix(".pub")
    retired.write_text(public_pem(load_pem_private_key(old.read_bytes(), None)))
    settings.LEDGER_TRUSTED_PUBLIC_KEYS = [str(retired)]
    services.checkpoint([fleet.alpha.pk])
    assert Checkpoint.objects.values("key_id").distinct().count() == 2
    assert first_problem() is None


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_writers_keep_one_unbroken_chain():
    from tests.support.fleet import make_tenant

    tenant = make_tenant("conc")
    errors = []

    def write():
        try:
            for _ in range(15):
                with transaction.atomic():
                    log(tenant, 1)
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    seqs = list(
        AuditEvent.objects.filter(tenant_id=tenant.pk)
        .order_by("chain_seq")
        .values_list("chain_seq", flat=True)
    )
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 90
    assert first_problem(tenant.pk) is None
