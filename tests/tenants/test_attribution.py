"""Attribution in the audit log: the causing person, the cause and a reason are recorded, are
hashed only when set (so records chained before the fields existed still verify, in the
database and in a pack checked by the standalone verifier), and an edit of them is detected."""

import json

import pytest

from tenants.access import SYSTEM
from tenants.choices import AuditCause, AuditSource
from tenants.evidence import services
from tenants.ledger import verify_pack
from tenants.ledger.verify_pack import ADDED_LATER, digest
from tenants.models import AuditEvent
from tenants.services import audit
from tenants.services.changes import ChangeContext, save_object
from tests.support.schema import assert_conforms

from .ledger.test_chain import AUDIT, first_problem, log, superuser
from .ledger.test_evidence import run_verifier, window

pytestmark = pytest.mark.django_db

#: A record as the canonical form knew it before the attribution fields existed, and its digest
#: computed by that version of ``verify_pack.py`` (commit 1fc08a2): a golden value, not one this
#: code computes, so a change of the canonical form that breaks old records fails here.
OLD_RECORD = {
    "log": "audit",
    "id": 7,
    "occurred_at": "2026-01-02T03:04:05.000006Z",
    "actor_id": 3,
    "actor_username": "alice",
    "source": "api",
    "action": "update",
    "object_type": "inventory.ultraserver",
    "object_id": "12",
    "object_repr": "TRN3-0001",
    "tenant_id": 4,
    "before": {"firmware_version": "1.0"},
    "after": {"firmware_version": "2.0"},
    "request_id": "req-1",
    "chain_seq": 5,
    "prev_hash": "a" * 64,
}
OLD_DIGEST = "be4b90e6af59a3cd820a5990836155c794d8ffd9fee2a10413183e64fc17f95a"
NEW_FIELDS = ("on_behalf_of", "cause_type", "cause_id", "reason")


def old_digest(fields):
    """The canonical form of the verifier before ``ADDED_LATER`` (nulls left out, no more)."""
    import hashlib

    body = {k: v for k, v in fields.items() if v is not None and k != "hash"}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def test_an_old_record_keeps_its_digest_and_the_new_fields_are_hashed_only_when_set():
    assert digest(OLD_RECORD) == OLD_DIGEST
    assert digest({**OLD_RECORD, **dict.fromkeys(NEW_FIELDS, "")}) == OLD_DIGEST
    assert digest({**OLD_RECORD, **dict.fromkeys(NEW_FIELDS)}) == OLD_DIGEST
    attributed = {**OLD_RECORD, "on_behalf_of": "bob", "cause_type": "workflow", "cause_id": "12"}
    assert digest(attributed) != OLD_DIGEST
    # A verifier older than the fields hashes a set field like any other: it agrees.
    assert digest(attributed) == old_digest(attributed)
    # Only the audit log's own later fields are skipped when empty, not any empty string.
    assert digest({**OLD_RECORD, "request_id": ""}) != digest(
        {k: v for k, v in OLD_RECORD.items() if k != "request_id"}
    )
    # Every later field the list names is a real column of the audit log.
    columns = {f.attname for f in AuditEvent._meta.concrete_fields}
    assert set(NEW_FIELDS) == ADDED_LATER["audit"] and ADDED_LATER["audit"] <= columns


def attributed(tenant, **cause):
    ctx = ChangeContext(SYSTEM, AuditSource.SYSTEM, "req-9").caused_by(
        AuditCause.WORKFLOW, 12, on_behalf_of="alpha-admin"
    )
    return audit.record(
        actor=ctx.actor,
        action="update",
        instance=tenant,
        before={"n": 1},
        after={"n": 2},
        source=ctx.source,
        request_id=ctx.request_id,
        reason="flash the canary first",
        **{**ctx.attribution(), **cause},
    )


def test_records_with_and_without_attribution_chain_and_verify(fleet):
    plain = log(fleet.alpha, 1)[0]
    event = attributed(fleet.alpha)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.on_behalf_of, stored.cause_type, stored.cause_id, stored.reason) == (
        "alpha-admin",
        "workflow",
        "12",
        "flash the canary first",
    )
    assert stored.request_id == "req-9" and stored.prev_hash == plain.record_hash
    # The unattributed one is hashed (and exported) exactly as before the fields existed.
    fields = AuditEvent.objects.get(pk=plain.pk).ledger_fields()
    assert not set(NEW_FIELDS) & set(fields)
    assert old_digest(fields) == plain.record_hash
    assert digest(stored.ledger_fields()) == stored.record_hash
    assert old_digest(stored.ledger_fields()) == stored.record_hash
    services.checkpoint()
    assert first_problem(fleet.alpha.pk) is None


@pytest.mark.parametrize(
    ("which", "sql"),
    [
        ("attributed", "UPDATE {t} SET on_behalf_of = 'mallory' WHERE id = %s"),
        ("attributed", "UPDATE {t} SET cause_id = '' WHERE id = %s"),
        ("attributed", "UPDATE {t} SET reason = 'nothing to see' WHERE id = %s"),
        ("plain", "UPDATE {t} SET on_behalf_of = 'alpha-admin' WHERE id = %s"),
        ("plain", "UPDATE {t} SET cause_type = 'job', cause_id = '5' WHERE id = %s"),
    ],
)
def test_editing_the_attribution_of_a_stored_record_is_detected(fleet, which, sql):
    rows = {"plain": log(fleet.alpha, 1)[0], "attributed": attributed(fleet.alpha)}
    log(fleet.alpha, 1)
    target = rows[which]
    assert first_problem(fleet.alpha.pk) is None
    superuser(sql.format(t=AUDIT), [target.pk])
    problem = first_problem(fleet.alpha.pk)
    assert problem is not None
    assert (problem.kind, problem.seq, problem.record_id) == ("edited", target.chain_seq, target.pk)


def test_a_pack_with_old_and_attributed_records_verifies_offline(fleet, tmp_path):
    log(fleet.alpha, 2)
    attributed(fleet.alpha)
    log(fleet.alpha, 1)
    start, end = window()
    pack = services.export_evidence(fleet.alpha, start, end)
    lines = [
        json.loads(line)
        for name, data in verify_pack.read_pack(pack).items()
        if name == "records/audit.jsonl"
        for line in data.decode().splitlines()
    ]
    assert [bool(r.get("cause_type")) for r in lines][-2:] == [True, False]
    assert all(set(NEW_FIELDS) <= set(r) or not set(NEW_FIELDS) & set(r) for r in lines)
    done = run_verifier(tmp_path, pack)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_change_services_and_acting_for_write_the_cause(fleet):
    tenant = fleet.alpha
    ctx = ChangeContext(SYSTEM).caused_by(AuditCause.RULE, 88)
    tenant.contact_email = "rules@alpha.example"
    save_object(tenant, ctx)
    event = AuditEvent.objects.filter(object_type="tenants.tenant").latest("chain_seq")
    assert (event.cause_type, event.cause_id, event.on_behalf_of) == ("rule", "88", "")
    job = ChangeContext(SYSTEM, request_id="r-1").caused_by(AuditCause.JOB, 55)
    with audit.acting_for(job):
        tenant.contact_email = "job@alpha.example"
        save_object(tenant, ChangeContext(SYSTEM))  # names no cause: the job's applies
        tenant.contact_email = "rule@alpha.example"
        save_object(tenant, ctx)  # a nearer cause stays
    assert audit.current_cause() is None
    job_event, rule_event = AuditEvent.objects.filter(
        object_type="tenants.tenant", tenant_id=tenant.pk
    ).order_by("-chain_seq")[:2][::-1]
    assert (job_event.cause_type, job_event.cause_id, job_event.request_id) == ("job", "55", "r-1")
    assert (rule_event.cause_type, rule_event.cause_id) == ("rule", "88")


def test_the_audit_events_api_shows_the_attribution(fleet):
    event = attributed(fleet.alpha)
    response = fleet.client("alpha_viewer").get(
        "/api/v1/audit-events/", {"cause_type": "workflow", "cause_id": "12"}
    )
    assert response.status_code == 200, response.content
    assert_conforms(response)
    (row,) = response.json()["results"]
    assert row["id"] == event.pk
    assert {k: row[k] for k in NEW_FIELDS} == {
        "on_behalf_of": "alpha-admin",
        "cause_type": "workflow",
        "cause_id": "12",
        "reason": "flash the canary first",
    }
    other = fleet.client("beta_viewer").get("/api/v1/audit-events/", {"cause_id": "12"})
    assert other.json()["results"] == []


def test_record_many_writes_what_record_would_in_one_insert(fleet):
    """The bulk helper shares ``record``'s field logic: each object's owning tenant (so each
    lands in its own chain), the ambient cause, the columns' lengths; and one insert."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    alpha, beta = fleet.sites["alpha"], fleet.sites["beta"]
    job = ChangeContext(SYSTEM, request_id="r-" + "9" * 80).caused_by(AuditCause.JOB, "j" * 100)
    long_cause = {"cause_type": AuditCause.RULE, "cause_id": "7" * 100, "on_behalf_of": "x" * 200}
    with audit.acting_for(job):
        with CaptureQueriesContext(connection) as queries:
            events = audit.record_many(
                [(alpha, {"n": 1}, {"n": 2}), (beta, {"n": 3}, {"n": 4})],
                actor=SYSTEM,
                action="update",
                source=AuditSource.SYSTEM,
                reason="r" * 600,
            )
        inserts = [q for q in queries if q["sql"].lstrip().upper().startswith("INSERT")]
        assert len(inserts) == 1
        (nearer,) = audit.record_many(
            [(alpha, None, {"n": 5})], actor=SYSTEM, action="create", source="system", **long_cause
        )
        assert audit.record_many([], actor=SYSTEM, action="update", source="system") == []
    stored = {e.pk: e for e in AuditEvent.objects.filter(pk__in=[e.pk for e in events])}
    first, second = (stored[e.pk] for e in events)
    assert (first.tenant_id, second.tenant_id) == (fleet.alpha.pk, fleet.beta.pk)
    assert (first.object_type, first.object_id, first.after) == (
        "inventory.site",
        str(alpha.pk),
        {"n": 2},
    )
    for event in (first, second):
        assert (event.cause_type, event.cause_id) == ("job", "j" * 64)  # the ambient cause
        assert event.request_id == job.request_id[:64] and len(event.reason) == 500
    nearer = AuditEvent.objects.get(pk=nearer.pk)
    assert (nearer.cause_type, nearer.cause_id, nearer.on_behalf_of) == (
        "rule",
        "7" * 64,
        "x" * 150,
    )  # a nearer cause stays, cut to the columns
    assert first_problem(fleet.alpha.pk) is None and first_problem(fleet.beta.pk) is None
