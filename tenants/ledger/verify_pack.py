"""The ledger's pure core and its standalone evidence-pack verifier.

One file, standard library plus ``cryptography`` only, no project imports: an auditor copies it
alone and runs ``python verify_pack.py pack.zip [--public-key key.pem]``. The control plane
imports the same functions, so what it writes and what the auditor checks cannot drift apart.

Canonical form of a record (defined once, here): its fields as a JSON object, top-level nulls
left out (so a nullable column added later does not change old digests), keys sorted by code
point, no whitespace, UTF-8, no NaN; values as JSON gives them back from storage (the writer
normalises numbers to what PostgreSQL's jsonb returns); times as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``
in UTC (the writer formats them); a field a log gained after records were chained is left out
while it is empty (``ADDED_LATER``). A record's digest is the sha256
of that, over every field except ``hash`` itself, including its ``log``, chain (``tenant_id``,
null for the provider's own chain), ``chain_seq`` and ``prev_hash``: so an edit, a deletion, a
reordering or a truncation after a signed checkpoint each breaks a named link.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import io
import json
import sys
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
PACK_FORMAT = "factory-evidence-pack/1"
MANIFEST = "manifest.json"
MANIFEST_SIG = "manifest.sig"


# --- Canonical form ---------------------------------------------------------------------------


def format_time(value: dt.datetime) -> str:
    """The one timestamp format of the canonical form (UTC, microseconds)."""
    utc = dt.timezone.utc  # noqa: UP017 - the verifier runs on Python < 3.11 too
    if value.tzinfo is None:
        value = value.replace(tzinfo=utc)
    return value.astimezone(utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _jsonb_value(value: Any) -> Any:
    """A JSON value as PostgreSQL's jsonb gives it back where Python's ``json`` would differ:
    jsonb numbers are ``numeric``, which has no negative zero, so ``-0.0`` reads back ``0.0``.
    (Other round trips agree: jsonb keeps big ints exact, ``1.0`` apart from ``1``, sorts no
    keys we rely on and decodes escapes; ``1e+20`` comes back an integer, normalised by the
    writer before hashing.)"""
    if isinstance(value, float):
        return 0.0 if value == 0 else value
    if isinstance(value, dict):
        return {k: _jsonb_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonb_value(v) for v in value]
    return value


#: Fields each log gained after records were chained in it: hashed only when set (not ``""``
#: or null), so a record written before the field existed keeps its digest, and one written
#: after with the field empty hashes as it would have before. Append here; never remove a name
#: (records that set it would stop verifying). A verifier older than a name still checks new
#: records: the writer leaves the empty field out of what it exports, and a set one is hashed
#: like any other field.
ADDED_LATER: Mapping[str, frozenset[str]] = {
    # the causing person and the cause of a change (issue 17): who started the workflow, job
    # run or rule that made it; and the reason a person gave
    "audit": frozenset({"on_behalf_of", "cause_type", "cause_id", "reason"}),
}


def unset_later_field(log: Any, name: str, value: Any) -> bool:
    """Whether ``name`` is a field ``log`` gained later (``ADDED_LATER``) and is empty here."""
    return (value is None or value == "") and name in ADDED_LATER.get(log, frozenset())


def canonical(fields: Mapping[str, Any]) -> bytes:
    """The canonical bytes of a record's fields (``hash`` excluded, top-level nulls omitted, and
    the empty fields a log gained later: ``ADDED_LATER``)."""
    log = fields.get("log")
    body = {
        k: _jsonb_value(v)
        for k, v in fields.items()
        if v is not None and k != "hash" and not unset_later_field(log, k, v)
    }
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def digest(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(fields)).hexdigest()


def checkpoint_payload(cp: Mapping[str, Any]) -> bytes:
    """What a checkpoint's signature covers: log, chain, seq, head hash, time and key id."""
    keys = ("log", "tenant_id", "seq", "head_hash", "created_at", "key_id")
    return canonical({k: cp.get(k) for k in keys})


# --- Verifying a chain ------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """The first broken link: which log and chain, where, and what is wrong."""

    log: str
    tenant_id: int | None
    seq: int | None
    record_id: Any
    kind: str  # edited | deleted | reordered | truncated | checkpoint | signature | pack
    detail: str

    def __str__(self) -> str:
        chain = "provider" if self.tenant_id is None else f"tenant {self.tenant_id}"
        where = f" seq {self.seq}" if self.seq is not None else ""
        rid = f" (id {self.record_id})" if self.record_id is not None else ""
        return f"{self.log} log, {chain} chain{where}{rid}: {self.kind}: {self.detail}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "record_id": self.record_id,
            "kind": self.kind,
            "detail": self.detail,
        }


@dataclass
class ChainReport:
    log: str
    tenant_id: int | None
    records: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    checkpoints: int = 0
    problem: Problem | None = None


def verify_chain(
    log: str,
    tenant_id: int | None,
    records: Iterable[Mapping[str, Any]],
    checkpoints: Iterable[Mapping[str, Any]] = (),
    *,
    public_keys: Mapping[str, Any] | None = None,
    start_seq: int = 1,
    start_prev: str = GENESIS,
) -> ChainReport:
    """Walk one chain in ``chain_seq`` order and stop at the first broken link.

    ``records`` are the stored rows (each with ``hash``); ``start_seq``/``start_prev`` anchor a
    chain that starts mid-way (an evidence pack's range). ``checkpoints`` are this chain's
    signed heads; ``public_keys`` maps key id → an Ed25519 public key object (with ``verify``)
    or PEM bytes; without it the signatures are not checked.
    """
    report = ChainReport(log, tenant_id, head_seq=start_seq - 1, head_hash=start_prev)
    cps = sorted(checkpoints, key=lambda c: c["seq"])
    wanted = {c["seq"] for c in cps}
    seen: dict[int, str] = {}
    expected, prev = start_seq, start_prev

    def fail(seq: int | None, rid: Any, kind: str, detail: str) -> ChainReport:
        report.problem = Problem(log, tenant_id, seq, rid, kind, detail)
        return report

    for rec in records:
        seq, rid = rec["chain_seq"], rec.get("id")
        if seq > expected:
            missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
            return fail(expected, rid, "deleted", f"records {missing} are missing (gap)")
        if seq < expected:
            return fail(seq, rid, "reordered", f"seq {seq} appears after seq {expected - 1}")
        if rec["prev_hash"] != prev:
            return fail(seq, rid, "reordered", "prev_hash is not the previous record's hash")
        if digest(rec) != rec["hash"]:
            return fail(seq, rid, "edited", "content does not match its digest")
        prev, expected = rec["hash"], seq + 1
        report.records += 1
        if seq in wanted:
            seen[seq] = prev
    report.head_seq, report.head_hash = expected - 1, prev
    keys = {k: _public_key(v) for k, v in (public_keys or {}).items()}
    for kid, key in keys.items():
        if key_id(key) != kid:  # a key id is bound to its key: no re-labelling a key
            return fail(None, None, "signature", f"key id {kid} is not the id of its key")
    for cp in cps:
        if cp["seq"] < start_seq:
            continue
        if cp["seq"] > report.head_seq:
            return fail(
                report.head_seq + 1,
                None,
                "truncated",
                f"checkpoint at seq {cp['seq']} but the chain ends at seq {report.head_seq}",
            )
        if seen.get(cp["seq"]) != cp["head_hash"]:
            return fail(cp["seq"], None, "checkpoint", "record hash differs from the checkpoint")
        if public_keys is not None:
            key = keys.get(cp["key_id"])
            if key is None:
                return fail(cp["seq"], None, "signature", f"unknown key id {cp['key_id']}")
            try:
                key.verify(base64.b64decode(cp["signature"]), checkpoint_payload(cp))
            except Exception:
                return fail(cp["seq"], None, "signature", "checkpoint signature is not valid")
        report.checkpoints += 1
    return report


def key_id(public_key: Any) -> str:
    """A ledger key's id: sha256 of its raw 32-byte Ed25519 public key, first 32 hex digits."""
    from cryptography.hazmat.primitives import serialization

    raw = _public_key(public_key).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return hashlib.sha256(raw).hexdigest()[:32]


def pinned_keys(pems: Iterable[bytes | str]) -> dict[str, Any]:
    """Key id → public key for keys the verifier trusts from outside the pack or database."""
    keys = [_public_key(p) for p in pems]
    return {key_id(k): k for k in keys}


def _public_key(value: Any) -> Any:
    if isinstance(value, str | bytes):
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        return load_pem_public_key(value.encode() if isinstance(value, str) else value)
    return value


def chain_records(
    log: str,
    tenant_id: int | None,
    rows: Iterable[dict[str, Any]],
    start: int = 1,
    prev: str = GENESIS,
) -> Iterator[dict[str, Any]]:
    """Link ``rows`` into a chain (for tests and the bench; the database does it per insert)."""
    for seq, row in enumerate(rows, start):
        rec = {**row, "log": log, "tenant_id": tenant_id, "chain_seq": seq, "prev_hash": prev}
        rec["hash"] = prev = digest(rec)
        yield rec


# --- Evidence packs ---------------------------------------------------------------------------


class PackError(Exception):
    """The pack is not intact (its problem is the message)."""


def sign_manifest(manifest: bytes, private_key: Any) -> bytes:
    return base64.b64encode(private_key.sign(manifest))


def read_pack(
    data: bytes, public_key_pem: bytes | Iterable[bytes] | None = None
) -> dict[str, bytes]:
    """The pack's files, after checking the manifest's signature and every file's sha256.

    With ``public_key_pem`` (one PEM or several) the manifest must be signed by a pinned key
    named by the manifest's key id; without it, by the pack's own current key in ``keys.json``
    (integrity only: say so to the auditor).
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        files = {name: archive.read(name) for name in archive.namelist()}
    except Exception as exc:
        raise PackError(f"not a readable archive: {exc}") from exc
    if MANIFEST not in files or MANIFEST_SIG not in files:
        raise PackError("manifest.json or manifest.sig missing")
    try:
        manifest = json.loads(files[MANIFEST])
        listed: dict[str, str] = manifest["files"]
        if public_key_pem is not None:
            pinned = pinned_keys(_pems(public_key_pem))
            if manifest["key_id"] not in pinned:
                raise PackError(f"manifest key id {manifest['key_id']} is not a pinned key")
            key = pinned[manifest["key_id"]]
        else:
            keys = {k["key_id"]: k["public_key_pem"] for k in json.loads(files["keys.json"])}
            key = _public_key(keys[manifest["key_id"]].encode())
            if key_id(key) != manifest["key_id"]:
                raise PackError(f"key id {manifest['key_id']} is not the id of its key")
        key.verify(base64.b64decode(files[MANIFEST_SIG]), files[MANIFEST])
    except PackError:
        raise
    except Exception as exc:
        raise PackError(f"manifest signature does not verify ({type(exc).__name__})") from exc
    extra = set(files) - set(listed) - {MANIFEST, MANIFEST_SIG}
    if extra:
        raise PackError(f"files not in the manifest: {sorted(extra)}")
    for name, sha in listed.items():
        if name not in files:
            raise PackError(f"{name} is listed in the manifest but missing")
        if hashlib.sha256(files[name]).hexdigest() != sha:
            raise PackError(f"{name} does not match its sha256 in the manifest")
    return files


def _pems(value: bytes | Iterable[bytes]) -> list[bytes]:
    return [value] if isinstance(value, bytes | str) else list(value)


def verify_pack(
    data: bytes, public_key_pem: bytes | Iterable[bytes] | None = None
) -> list[ChainReport]:
    """Check a pack: manifest and files, then every chain in it against its checkpoints
    (signed by the pinned keys when given, else by the pack's ``keys.json``), and refuse a
    chain whose last record no checkpoint in the pack covers."""
    files = read_pack(data, public_key_pem)
    try:
        chains = json.loads(files["chains.json"])
        checkpoints = json.loads(files["checkpoints.json"])
        keys: Mapping[str, Any] = {
            k["key_id"]: k["public_key_pem"] for k in json.loads(files["keys.json"])
        }
        if public_key_pem is not None:
            keys = pinned_keys(_pems(public_key_pem))
        records: dict[tuple[str, Any], list[dict]] = {}
        for chain in chains:
            lines = files[chain["file"]].decode().splitlines()
            for line in lines:
                rec = json.loads(line)
                records.setdefault((rec["log"], rec.get("tenant_id")), []).append(rec)
    except Exception as exc:
        raise PackError(f"pack contents are not readable: {type(exc).__name__}: {exc}") from exc
    reports = []
    for chain in chains:
        log, tenant = chain["log"], chain["tenant_id"]
        report = verify_chain(
            log,
            tenant,
            records.get((log, tenant), []),
            [c for c in checkpoints if c["log"] == log and c["tenant_id"] == tenant],
            public_keys=keys,
            start_seq=chain["start_seq"],
            start_prev=chain["start_prev"],
        )
        covered = any(
            c["log"] == log and c["tenant_id"] == tenant and c["seq"] >= chain["range_last_seq"]
            for c in checkpoints
        )
        if report.problem is None and not covered:
            report.problem = Problem(
                log,
                tenant,
                chain["range_last_seq"],
                None,
                "pack",
                "no signed checkpoint in the pack covers the chain's last record",
            )
        if report.problem is None and report.head_seq != chain["end_seq"]:
            report.problem = Problem(
                log,
                tenant,
                report.head_seq + 1,
                None,
                "truncated",
                f"the pack says the chain runs to seq {chain['end_seq']}",
            )
        reports.append(report)
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify an evidence pack offline.")
    parser.add_argument("pack", help="the evidence pack (.zip)")
    parser.add_argument(
        "--public-key",
        action="append",
        help="PEM file of a ledger key to trust (pinned; repeat for retired keys): the manifest "
        "and every checkpoint must be signed by one of them",
    )
    args = parser.parse_args(argv)
    try:
        with open(args.pack, "rb") as fh:
            data = fh.read()
        pems = None
        if args.public_key:
            pems = []
            for name in args.public_key:
                with open(name, "rb") as fh:
                    pems.append(fh.read())
        reports = verify_pack(data, pems)
    except (OSError, PackError) as exc:
        print(f"FAILED: {exc}")
        return 2
    for report in reports:
        if report.problem:
            print(f"FAILED: {report.problem}")
            return 1
    total = sum(r.records for r in reports)
    cps = sum(r.checkpoints for r in reports)
    trust = "pinned key" if args.public_key else "the pack's own key (pass --public-key to pin)"
    print(f"OK: {len(reports)} chains, {total} records, {cps} checkpoints; signed by {trust}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
