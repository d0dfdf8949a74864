"""Evidence packs: exported through the API and the command, checked by the standalone verifier
run from a copy of its one file in a clean environment; a changed byte or a removed record
fails it. And the verify API: its scope and its schema."""

import datetime as dt
import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from django.core.management import call_command
from django.utils import timezone

from tenants.evidence import services
from tenants.ledger import verify_pack
from tenants.sovereignty.core import cedar
from tests.support.schema import assert_conforms
from tests.support.sovereignty import active_rule

from .test_chain import AUDIT, decide, log, superuser

VERIFY, EVIDENCE = "/api/v1/ledger/verify/", "/api/v1/ledger/evidence/"
VERIFIER = Path(verify_pack.__file__)


def window():
    now = timezone.now()
    return now - dt.timedelta(hours=1), now + dt.timedelta(hours=1)


def run_verifier(tmp_path, pack: bytes, *args):
    """The verifier as an auditor runs it: its file copied alone, no project, a bare env."""
    alone = tmp_path / "auditor"
    alone.mkdir(exist_ok=True)
    shutil.copy(VERIFIER, alone / "verify_pack.py")
    (alone / "pack.zip").write_bytes(pack)
    return subprocess.run(
        [sys.executable, "-I", "verify_pack.py", "pack.zip", *args],
        cwd=alone,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def public_key_file(tmp_path, ledger_key) -> str:
    key = load_pem_private_key(ledger_key.read_bytes(), None)
    from tenants.evidence.keys import public_pem

    path = tmp_path / "ledger.pub.pem"
    path.write_text(public_pem(key))
    return str(path)


def repack(pack: bytes, change, ledger_key=None) -> bytes:
    """The pack with ``change(files)`` applied; re-signed with the ledger key when given (an
    insider who holds it), else with the old manifest and signature."""
    files = {
        n: zipfile.ZipFile(io.BytesIO(pack)).read(n)
        for n in zipfile.ZipFile(io.BytesIO(pack)).namelist()
    }
    change(files)
    if ledger_key is not None:
        manifest = json.loads(files["manifest.json"])
        manifest["files"] = {
            n: hashlib.sha256(d).hexdigest()
            for n, d in files.items()
            if n not in ("manifest.json", "manifest.sig")
        }
        files["manifest.json"] = json.dumps(manifest).encode()
        key = load_pem_private_key(ledger_key.read_bytes(), None)
        files["manifest.sig"] = verify_pack.sign_manifest(files["manifest.json"], key)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.fixture
def evidence(fleet):
    """alpha: an active rule, audit events and decisions, a checkpoint, then more records."""
    active_rule(fleet, "residency", asset_kinds=["dataset"], allowed=["EU"])
    log(fleet.alpha, 3)
    decide(fleet.alpha.pk, 3)
    services.checkpoint()
    log(fleet.alpha, 2)
    decide(fleet.beta.pk, 2)
    return fleet


def test_an_exported_pack_verifies_offline_and_says_what_it_evidences(
    evidence, tmp_path, ledger_key
):
    start, end = window()
    response = evidence.client("alpha_admin").post(
        EVIDENCE, {"start": start.isoformat(), "end": end.isoformat()}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/zip"
    pack = response.content
    done = run_verifier(tmp_path, pack, "--public-key", public_key_file(tmp_path, ledger_key))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("OK: 2 chains")
    assert "pinned key" in done.stdout
    archive = zipfile.ZipFile(io.BytesIO(pack))
    index = json.loads(archive.read("index.json"))
    kinds = {c["kind"]: c for c in index["contents"]}
    assert "IDM-07" in kinds["decision"]["C5:2020"] and "OPS-14" in kinds["audit"]["C5:2020"]
    assert "PSS-04" in kinds["audit"]["C5:2020"] and kinds["decision"]["SecNumCloud 3.2"]
    policies = archive.read("rules/policies.cedar").decode()
    rule = json.loads(archive.read("rules/rules.json"))[0]
    assert f'@id("{rule["cedar_id"]}")' in policies and "forbid" in policies
    # Cedar's JSON schema format, as Verified Permissions takes it, and what the engine uses.
    schema = json.loads(archive.read("rules/schema.cedarschema.json"))
    assert set(schema[""]["entityTypes"]) == {"Site", "Asset", "Person", "Artifact"}
    assert schema == cedar.SCHEMA_JSON
    assert "entity Site = {" in archive.read("rules/schema.cedarschema").decode()
    tenants = {
        json.loads(line)["tenant_id"]
        for line in archive.read("records/decision.jsonl").splitlines()
    }
    assert tenants == {evidence.alpha.pk}  # beta's decisions are not in alpha's pack
    chains = json.loads(archive.read("chains.json"))
    assert {c["log"] for c in chains} == {"audit", "decision"}
    assert json.loads(archive.read("checkpoints.json"))


def test_a_changed_byte_or_a_removed_record_fails_the_pack(evidence, tmp_path, ledger_key):
    pack = services.export_evidence(evidence.alpha, *window())
    assert verify_pack.verify_pack(pack)[0].problem is None
    pinned = public_key_file(tmp_path, ledger_key)
    data = bytearray(pack)
    at = data.index(b"records/audit.jsonl") + 60  # inside the first member's data
    data[at] ^= 0x01
    done = run_verifier(tmp_path, bytes(data), "--public-key", pinned)
    assert done.returncode != 0 and done.stdout.startswith("FAILED"), done.stdout

    def drop_second_record(files):
        lines = files["records/decision.jsonl"].splitlines(keepends=True)
        files["records/decision.jsonl"] = b"".join(lines[:1] + lines[2:])

    done = run_verifier(tmp_path, repack(pack, drop_second_record), "--public-key", pinned)
    assert done.returncode == 2 and "does not match its sha256" in done.stdout, done.stdout
    resigned = repack(pack, drop_second_record, ledger_key)
    done = run_verifier(tmp_path, resigned, "--public-key", pinned)
    assert done.returncode == 1 and "deleted" in done.stdout and "decision log" in done.stdout


def test_a_pack_signed_by_another_key_fails_when_the_key_is_pinned(evidence, tmp_path, ledger_key):
    pinned = public_key_file(tmp_path, ledger_key)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = tmp_path / "other.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    forged = repack(services.export_evidence(evidence.alpha, *window()), lambda f: None, other)
    done = run_verifier(tmp_path, forged, "--public-key", pinned)
    assert done.returncode == 2 and "signature" in done.stdout


def test_a_tampered_log_is_not_exported(evidence):
    """Changed for issue 14 review: a broken chain is refused at export (409 naming the broken
    link) instead of packed for the verifier to find."""
    target = evidence.alpha.pk
    superuser(
        f"UPDATE {AUDIT} SET object_repr = 'x' WHERE tenant_id = %s AND chain_seq = 2", [target]
    )
    start, end = window()
    body = {"start": start.isoformat(), "end": end.isoformat()}
    answer = evidence.client("alpha_admin").post(EVIDENCE, body, format="json")
    assert answer.status_code == 409, answer.content
    assert "edited" in answer.content.decode() and "seq 2" in answer.content.decode()


def test_the_command_writes_a_pack(evidence, tmp_path):
    out = tmp_path / "pack.zip"
    start, end = window()
    call_command(
        "export_evidence",
        "--tenant",
        "alpha",
        "--from",
        start.isoformat(),
        "--to",
        end.isoformat(),
        "-o",
        str(out),
    )
    assert run_verifier(tmp_path, out.read_bytes()).returncode == 0


def test_evidence_scope_and_errors(evidence):
    start, end = window()
    body = {"start": start.isoformat(), "end": end.isoformat()}
    beta = evidence.client("beta_admin")
    other = beta.post(EVIDENCE, {**body, "tenant": evidence.alpha.pk}, format="json")
    assert other.status_code == 404 and other.json()["errors"][0]["field"] == "tenant"
    provider = evidence.client("provider_admin")
    unnamed = provider.post(EVIDENCE, body, format="json")
    assert unnamed.status_code == 400 and unnamed.json()["errors"][0]["field"] == "tenant"
    ok = provider.get(EVIDENCE, {**body, "tenant": evidence.alpha.pk})
    assert ok.status_code == 200 and ok["Content-Type"] == "application/zip"
    backwards = beta.get(EVIDENCE, {"start": end.isoformat(), "end": start.isoformat()})
    assert backwards.status_code == 400 and backwards.json()["errors"][0]["field"] == "end"
    assert evidence.client("technician").get(EVIDENCE, body).status_code == 403


def test_verify_api_scope_and_schema(evidence):
    alpha = evidence.client("alpha_viewer").get(VERIFY)
    assert alpha.status_code == 200
    assert_conforms(alpha)
    body = alpha.json()
    assert body["ok"] is True and body["first_problem"] is None
    assert {c["tenant_id"] for c in body["chains"]} == {evidence.alpha.pk}
    everyone = evidence.client("provider_admin").get(VERIFY).json()
    assert {evidence.alpha.pk, evidence.beta.pk} <= {c["tenant_id"] for c in everyone["chains"]}
    assert (
        evidence.client("beta_admin").get(VERIFY, {"tenant": evidence.alpha.pk}).status_code == 404
    )
    assert evidence.client("alpha_admin").get(VERIFY, {"tenant": "x"}).status_code == 400
    superuser(f"DELETE FROM {AUDIT} WHERE tenant_id = %s AND chain_seq = 2", [evidence.alpha.pk])
    broken = evidence.client("alpha_admin").get(VERIFY)
    assert_conforms(broken)
    problem = broken.json()["first_problem"]
    assert broken.json()["ok"] is False
    assert (problem["log"], problem["kind"], problem["seq"]) == ("audit", "deleted", 2)


def test_the_standalone_verifier_needs_only_the_standard_library_and_cryptography():
    from tests.support.purity import imported_modules

    allowed = set(sys.stdlib_module_names) | {"__future__", "cryptography"}
    imported = {name.split(".")[0] for name in imported_modules(str(VERIFIER))}
    assert imported <= allowed, imported - allowed
