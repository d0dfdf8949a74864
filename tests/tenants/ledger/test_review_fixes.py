"""Issue 14 review fixes of the ledger: checkpoints refuse to sign over a broken segment, trust
is pinned outside the database (key ids bound to their keys), ``-0.0`` and other JSON round
trips hash as PostgreSQL gives them back, and evidence packs are anchored to signed heads."""

import base64
import json
import math

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenants.errors import Conflict
from tenants.evidence import services
from tenants.ledger import verify_pack
from tenants.ledger.verify_pack import checkpoint_payload
from tenants.models import AuditEvent
from tenants.models.audit import Checkpoint, LedgerKey

from .test_chain import AUDIT, chain, first_problem, log, superuser
from .test_evidence import public_key_file, repack, run_verifier, window


def test_checkpoint_refuses_to_sign_over_a_broken_segment(fleet, caplog):
    log(fleet.alpha, 5)
    services.checkpoint([fleet.alpha.pk])
    log(fleet.alpha, 2)
    rows = chain(fleet.alpha)
    superuser(f"UPDATE {AUDIT} SET object_repr = 'edited' WHERE id = %s", [rows[-2].pk])
    assert services.checkpoint([fleet.alpha.pk]) == []
    assert "ledger checkpoint refused" in caplog.text and "edited" in caplog.text
    with pytest.raises(Conflict) as refused:
        services.checkpoint([fleet.alpha.pk], raise_on_broken=True)
    assert refused.value.code == "ledger_broken"
    assert Checkpoint.objects.filter(tenant_id=fleet.alpha.pk).count() == 1


def test_checkpoint_refuses_when_the_checkpointed_record_was_removed(fleet):
    """Deleting the tail through the last checkpointed record and writing on: the new rows link
    to the new head, but the next checkpoint finds its predecessor's record gone."""
    log(fleet.alpha, 5)
    (cp,) = services.checkpoint([fleet.alpha.pk])
    superuser(
        f"DELETE FROM {AUDIT} WHERE tenant_id = %s AND chain_seq >= %s",
        [fleet.alpha.pk, cp.seq - 1],
    )
    log(fleet.alpha, 3)  # seq top-1, top, top+1: linked to the new head
    assert services.checkpoint([fleet.alpha.pk]) == []
    problem = first_problem(fleet.alpha.pk)
    assert (problem.kind, problem.seq) == ("checkpoint", cp.seq)


def _forge_key(fleet):
    """A database superuser's own key, registered in LedgerKey, re-signing the checkpoint."""
    log(fleet.alpha, 3)
    (cp,) = services.checkpoint([fleet.alpha.pk])
    forger = Ed25519PrivateKey.generate()
    from tenants.evidence.keys import key_id_of, public_pem

    kid = key_id_of(forger)
    LedgerKey.objects.create(key_id=kid, public_key_pem=public_pem(forger))
    fields = {**cp.payload_fields(), "key_id": kid}
    sig = base64.b64encode(forger.sign(checkpoint_payload(fields))).decode()
    superuser(
        "UPDATE tenants_checkpoint SET key_id = %s, signature = %s WHERE id = %s",
        [kid, sig, cp.pk],
        table="tenants_checkpoint",
    )
    return forger, kid


def test_a_key_inserted_into_the_database_is_not_trusted(fleet):
    _, kid = _forge_key(fleet)
    problem = first_problem(fleet.alpha.pk)
    assert problem.kind == "signature" and kid in problem.detail


def test_a_key_id_is_bound_to_its_key():
    key = Ed25519PrivateKey.generate().public_key()
    other = Ed25519PrivateKey.generate().public_key()
    recs = list(verify_pack.chain_records("audit", 1, [{"n": 1}]))
    report = verify_pack.verify_chain(
        "audit", 1, recs, [], public_keys={verify_pack.key_id(key): other}
    )
    assert report.problem.kind == "signature" and "not the id of its key" in report.problem.detail


def test_the_offline_verifier_checks_checkpoints_against_the_pinned_key(
    fleet, tmp_path, ledger_key
):
    """A pack whose keys.json and checkpoints were replaced by a forger's key (manifest
    re-signed by the real key, the worst case) fails with --public-key."""
    log(fleet.alpha, 3)
    pack = services.export_evidence(fleet.alpha, *window())
    forger = Ed25519PrivateKey.generate()
    from tenants.evidence.keys import key_id_of, public_pem

    kid = key_id_of(forger)

    def forge(files):
        cps = json.loads(files["checkpoints.json"])
        for cp in cps:
            cp["key_id"] = kid
            cp["signature"] = base64.b64encode(forger.sign(checkpoint_payload(cp))).decode()
        files["checkpoints.json"] = json.dumps(cps).encode()
        keys = json.loads(files["keys.json"])  # the real key stays: it signs the manifest
        keys.append({"key_id": kid, "public_key_pem": public_pem(forger)})
        files["keys.json"] = json.dumps(keys).encode()

    forged = repack(pack, forge, ledger_key)
    assert verify_pack.verify_pack(forged)[0].problem is None  # unpinned: integrity only
    done = run_verifier(tmp_path, forged, "--public-key", public_key_file(tmp_path, ledger_key))
    assert done.returncode == 1 and "unknown key id" in done.stdout, done.stdout


def test_export_checkpoints_first_and_a_pack_without_a_covering_checkpoint_is_refused(
    fleet, tmp_path, ledger_key
):
    log(fleet.alpha, 3)  # no checkpoint yet: export makes one
    pack = services.export_evidence(fleet.alpha, *window())
    reports = verify_pack.verify_pack(pack)
    assert reports[0].problem is None and reports[0].checkpoints >= 1

    def drop_checkpoints(files):
        files["checkpoints.json"] = b"[]"

    stripped = repack(pack, drop_checkpoints, ledger_key)
    done = run_verifier(tmp_path, stripped, "--public-key", public_key_file(tmp_path, ledger_key))
    assert done.returncode == 1 and "no signed checkpoint" in done.stdout, done.stdout


def test_export_refuses_a_broken_chain_naming_the_link(fleet):
    log(fleet.alpha, 4)
    services.checkpoint([fleet.alpha.pk])
    log(fleet.alpha, 4)
    superuser(f"DELETE FROM {AUDIT} WHERE tenant_id = %s AND chain_seq = 6", [fleet.alpha.pk])
    with pytest.raises(Conflict) as refused:
        services.export_evidence(fleet.alpha, *window())
    assert refused.value.code == "ledger_broken" and "seq 6" in str(refused.value)


def test_a_pack_starts_at_a_signed_head_so_a_deleted_record_before_the_range_shows(
    fleet, ledger_key
):
    log(fleet.alpha, 3)
    services.checkpoint([fleet.alpha.pk])
    log(fleet.alpha, 3)
    pack = services.export_evidence(fleet.alpha, *window())
    chains = json.loads(verify_pack.read_pack(pack)["chains.json"])
    audit = next(c for c in chains if c["log"] == "audit")
    assert audit["start_seq"] == 1  # no checkpoint before the range: from genesis
    later = chain(fleet.alpha)[4].occurred_at
    superuser(f"DELETE FROM {AUDIT} WHERE tenant_id = %s AND chain_seq = 4", [fleet.alpha.pk])
    with pytest.raises(Conflict):
        services.export_evidence(fleet.alpha, later, window()[1])


# --- JSON round trips through PostgreSQL -----------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_characters="\x00", codec="utf-8")),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8", exclude_characters="\x00")), inner)
    ),
    max_leaves=12,
)


def test_negative_zero_verifies(fleet):
    event = AuditEvent.objects.create(
        tenant_id=fleet.alpha.pk, source="api", action="update", object_type="t",
        object_id="1", object_repr="x", after={"v": -0.0, "w": [-0.0, 1.0, 1, 10**20]},
    )  # fmt: skip
    assert math.copysign(1, event.after["v"]) == -1  # the writer's own value
    assert first_problem(fleet.alpha.pk) is None


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=JSON)
def test_any_json_value_read_back_from_postgresql_verifies(fleet, value):
    event = AuditEvent.objects.create(
        tenant_id=fleet.alpha.pk, source="api", action="update", object_type="t",
        object_id="1", object_repr="x", after={"v": value},
    )  # fmt: skip
    stored = AuditEvent.objects.filter(pk=event.pk).values().get()
    assert verify_pack.digest(services.stored_record(AuditEvent, stored)) == event.record_hash


# --- Lock order -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_transactions_writing_two_chains_in_opposite_orders_do_not_deadlock():
    """{A, B} and {B, A} in two threads, each pausing between its two writes: with the chain
    locks taken up front in the global order neither deadlocks (40P01) and both chains verify."""
    import contextlib
    import threading

    from django.db import connections, transaction

    from tenants.models.audit import lock_chains
    from tests.support.fleet import make_tenant

    a, b = make_tenant("lock-a"), make_tenant("lock-b")
    errors: list[Exception] = []
    barrier = threading.Barrier(2, timeout=5)

    def write(first, second):
        try:
            for _ in range(5):
                with transaction.atomic():
                    lock_chains(AuditEvent, [first.pk, second.pk])
                    log(first, 1)
                    with contextlib.suppress(threading.BrokenBarrierError):
                        barrier.wait(timeout=0.3)  # the other holds its first lock, if it can
                    log(second, 1)
                barrier.reset()
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=p) for p in ((a, b), (b, a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert AuditEvent.objects.filter(tenant_id__in=[a.pk, b.pk]).count() >= 20
    assert first_problem(a.pk) is None and first_problem(b.pk) is None
