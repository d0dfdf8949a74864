"""Checkpoints, verification and evidence packs over the hash-chained logs.

The chains themselves are linked at insert (``tenants.models.audit.link``); this module signs
their heads, walks them with the pure verifier and packs a tenant's range for an auditor.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import logging
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from tenants.errors import Conflict
from tenants.ledger.verify_pack import (
    GENESIS,
    MANIFEST,
    MANIFEST_SIG,
    PACK_FORMAT,
    ChainReport,
    Problem,
    checkpoint_payload,
    format_time,
    sign_manifest,
    verify_chain,
)
from tenants.models import Tenant
from tenants.models.audit import AuditEvent, Checkpoint, chain_filter, ledger_content
from tenants.sovereignty.core import cedar
from tenants.sovereignty.models import DecisionRecord, SovereigntyRule
from tenants.sovereignty.services import as_rule
from tenants.sovereignty.services.decisions import close_repeats

from .keys import signing_key, trusted_keys

logger = logging.getLogger(__name__)

# Typed loosely: both logs have ``tenant_id`` and ``occurred_at``, the abstract base does not.
LOGS: dict[str, Any] = {"audit": AuditEvent, "decision": DecisionRecord}

# What each record kind evidences. C5 = BSI C5:2020 criteria; SecNumCloud = ANSSI SecNumCloud
# v3.2 chapters. Indicative: the auditor confirms the mapping against their own reference.
CONTROLS: dict[str, dict[str, Any]] = {
    "decision": {
        "description": "access-transparency log: every sovereignty decision (placement, "
        "replication, transfer, personnel access to a site, artifact provenance, telemetry "
        "egress, key custody), allowed or denied, with the rules that decided it",
        "C5:2020": ["IDM-07", "PSS-12", "OPS-14"],
        "SecNumCloud 3.2": [
            "ch. 9 access control (provider access to customer data)",
            "ch. 19 data location and protection against non-EU law",
        ],
    },
    "audit": {
        "description": "audit log: every change to the tenant's objects, including access "
        "requests and their approvals, rules and their activation, by whom and when",
        "C5:2020": ["OPS-14", "OPS-15", "IDM-06", "PSS-04"],
        "SecNumCloud 3.2": ["ch. 12 operations security (event logging)"],
    },
    "checkpoint": {
        "description": "signed heads of each chain (Ed25519): records cannot be edited, "
        "removed, reordered or cut off after a checkpoint without it showing",
        "C5:2020": ["OPS-14"],
        "SecNumCloud 3.2": ["ch. 12 operations security (protection of logs)"],
    },
    "rules": {
        "description": "the tenant's sovereignty rules in force in the range, as Cedar policy "
        "text and the Cedar schema the engine validates them against",
        "C5:2020": ["PSS-12", "IDM-07"],
        "SecNumCloud 3.2": ["ch. 19 data location"],
    },
    "keys": {
        "description": "the ledger's public keys (every key id a checkpoint or this manifest "
        "names)",
        "C5:2020": ["CRY-04"],
        "SecNumCloud 3.2": ["ch. 10 cryptography"],
    },
}


# --- Reading the chains -----------------------------------------------------------------------


def stored_record(model: Any, values: Any) -> dict[str, Any]:
    """A stored row as the verifier sees it: its hashed fields plus its stored ``hash``."""
    return {**ledger_content(model, values), "hash": values["record_hash"]}


def chain_ids(model: Any, tenant_ids: Iterable[int] | None) -> list[int | None]:
    """The chains of a log (None: the provider's own), from its rows and its checkpoints, so a
    chain whose rows were all removed still shows up."""
    rows = model.objects.all()
    cps = Checkpoint.objects.filter(log=model.ledger_log)
    if tenant_ids is not None:
        ids = list(tenant_ids)
        rows, cps = rows.filter(tenant_id__in=ids), cps.filter(tenant_id__in=ids)
    found = set(rows.values_list("tenant_id", flat=True).distinct().order_by())
    found |= set(cps.values_list("tenant_id", flat=True).distinct().order_by())
    return sorted(found, key=lambda t: -1 if t is None else t)


def records(
    model: Any, tenant_id: int | None, first: int = 1, last: int | None = None
) -> Iterator[dict[str, Any]]:
    rows = model.objects.filter(chain_filter(tenant_id), chain_seq__gte=first)
    if last is not None:
        rows = rows.filter(chain_seq__lte=last)
    for values in rows.order_by("chain_seq", "id").values().iterator(chunk_size=5000):
        yield stored_record(model, values)


def checkpoints(log: str, tenant_id: int | None) -> list[dict[str, Any]]:
    rows = Checkpoint.objects.filter(chain_filter(tenant_id), log=log).order_by("seq", "id")
    return [cp.payload_fields() for cp in rows]


def verify_logs(tenant_ids: Iterable[int] | None = None) -> list[ChainReport]:
    """Walk every chain (of ``tenant_ids``; None: all, the provider's own included), checking
    checkpoint signatures against the keys pinned outside the database only."""
    keys = trusted_keys()
    reports = []
    for log, model in LOGS.items():
        for tenant_id in chain_ids(model, tenant_ids):
            reports.append(
                verify_chain(
                    log,
                    tenant_id,
                    records(model, tenant_id),
                    checkpoints(log, tenant_id),
                    public_keys=keys,
                )
            )
    return reports


# --- Checkpoints ------------------------------------------------------------------------------


def checkpoint(
    tenant_ids: Iterable[int] | None = None, *, raise_on_broken: bool = False
) -> list[Checkpoint]:
    """Sign the head of every chain that moved since its last checkpoint (the beat job, and on
    demand). One row per chain; a chain that did not move gets none. The segment since the
    previous checkpoint is verified first: a broken chain is refused (logged as an error; with
    ``raise_on_broken`` a 409 naming the broken link) rather than signed over."""
    kid, key = signing_key()
    made: list[Checkpoint] = []
    refused: list[Problem] = []
    with transaction.atomic():
        for log, model in LOGS.items():
            heads = model.objects.all()
            if tenant_ids is not None:
                heads = heads.filter(tenant_id__in=list(tenant_ids))
            tops = heads.values("tenant_id").annotate(top=Max("chain_seq")).order_by()
            for row in tops:
                tenant_id, top = row["tenant_id"], row["top"]
                done = Checkpoint.objects.filter(chain_filter(tenant_id), log=log)
                if done.filter(seq__gte=top).exists():
                    continue
                problem = _segment_problem(log, model, tenant_id)
                if problem is not None:  # never sign over a broken link: refuse and alert
                    logger.error("ledger checkpoint refused: %s", problem)
                    refused.append(problem)
                    continue
                head = model.objects.filter(chain_filter(tenant_id), chain_seq=top).values_list(
                    "record_hash", flat=True
                )[0]
                cp = Checkpoint(log=log, tenant_id=tenant_id, seq=top, head_hash=head, key_id=kid)
                cp.created_at = timezone.now()
                payload = checkpoint_payload(cp.payload_fields())
                cp.signature = base64.b64encode(key.sign(payload)).decode()
                cp.save()
                made.append(cp)
    if refused and raise_on_broken:
        raise Conflict(
            f"checkpoint refused: {refused[0]}", code="ledger_broken", field=refused[0].log
        )
    return made


def _segment_problem(log: str, model: Any, tenant_id: int | None) -> Problem | None:
    """The first broken link since the chain's last checkpoint (its signed head the anchor),
    or the last checkpoint's own record no longer matching it."""
    last = (
        Checkpoint.objects.filter(chain_filter(tenant_id), log=log).order_by("-seq", "-id").first()
    )
    if last is None:
        report = verify_chain(log, tenant_id, records(model, tenant_id))
    else:
        report = verify_chain(
            log,
            tenant_id,
            records(model, tenant_id, last.seq),
            [last.payload_fields()],
            public_keys=trusted_keys(),
            start_seq=last.seq,
            start_prev=_prev_of(model, tenant_id, last.seq),
        )
    return report.problem


def _prev_of(model: Any, tenant_id: int | None, seq: int) -> str:
    """The prev_hash the record at ``seq`` carries (its own link is checked by its digest)."""
    found = (
        model.objects.filter(chain_filter(tenant_id), chain_seq=seq)
        .values_list("prev_hash", flat=True)
        .first()
    )
    return found if found is not None else GENESIS


# --- Evidence packs ---------------------------------------------------------------------------


def _chain_slice(
    model: Any, tenant_id: int, start: dt.datetime, end: dt.datetime
) -> dict[str, Any] | None:
    """Which part of a chain a pack carries: from the last checkpoint before the range's first
    record (its signed head anchors the start; genesis if none) to the first checkpoint at or
    after the range's last record. A broken link in that slice refuses the export (409)."""
    log = model.ledger_log
    chain = model.objects.filter(tenant_id=tenant_id)
    span = chain.filter(occurred_at__gte=start, occurred_at__lt=end).values_list(
        "chain_seq", flat=True
    )
    first, last = min(span, default=None), max(span, default=None)
    if first is None or last is None:
        return None
    cps = Checkpoint.objects.filter(log=log, tenant_id=tenant_id)
    cover = cps.filter(seq__gte=last).order_by("seq").values_list("seq", flat=True).first()
    anchor = cps.filter(seq__lt=first).order_by("-seq").values_list("seq", flat=True).first()
    if cover is None:
        raise Conflict(
            f"{log} log: no checkpoint covers seq {last}", code="ledger_unchecked", field=log
        )
    start_seq = anchor if anchor is not None else 1
    start_prev = GENESIS if anchor is None else _prev_of(model, tenant_id, anchor)
    report = verify_chain(
        log,
        tenant_id,
        records(model, tenant_id, start_seq, cover),
        [c for c in checkpoints(log, tenant_id) if start_seq <= c["seq"] <= cover],
        public_keys=trusted_keys(),
        start_seq=start_seq,
        start_prev=start_prev,
    )
    if report.problem is None and report.head_seq != cover:
        report.problem = Problem(
            log, tenant_id, report.head_seq + 1, None, "truncated", f"chain ends before {cover}"
        )
    if report.problem is not None:
        raise Conflict(f"the chain is broken: {report.problem}", code="ledger_broken", field=log)
    return {
        "log": log,
        "tenant_id": tenant_id,
        "file": f"records/{log}.jsonl",
        "start_seq": start_seq,
        "start_prev": start_prev,
        "end_seq": cover,
        "range_first_seq": first,
        "range_last_seq": last,
    }


def _rules_in_force(tenant_id: int, start: dt.datetime, end: dt.datetime) -> list[SovereigntyRule]:
    return list(
        SovereigntyRule.objects.filter(tenant_id=tenant_id, activated_at__lt=end)
        .filter(Q(retired_at__isnull=True) | Q(retired_at__gte=start))
        .order_by("pk")
    )


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode()


def export_evidence(tenant: Tenant, start: dt.datetime, end: dt.datetime) -> bytes:
    """One signed zip of a tenant's evidence for [start, end): its chained records (with the
    anchor and the checkpoints that cover them), the rules in force as Cedar, the public keys,
    an index mapping each kind to the controls it evidences, and a signed sha256 manifest."""
    kid, key = signing_key()
    # Repeats still being counted reach the chain first (as summary rows), so the pack holds
    # every decision up to now, not only those whose tally period has ended.
    close_repeats(tenant.pk, everything=True)
    checkpoint([tenant.pk], raise_on_broken=True)  # the pack ends at a signed head
    files: dict[str, bytes] = {}
    chains, cps = [], []
    for log, model in LOGS.items():
        part = _chain_slice(model, tenant.pk, start, end)
        if part is None:
            continue
        chains.append(part)
        rows = records(model, tenant.pk, part["start_seq"], part["end_seq"])
        files[part["file"]] = b"".join(
            json.dumps(r, sort_keys=True, ensure_ascii=False).encode() + b"\n" for r in rows
        )
        cps += [
            c
            for c in checkpoints(log, tenant.pk)
            if part["start_seq"] <= c["seq"] <= part["end_seq"]
        ]
    rules = _rules_in_force(tenant.pk, start, end)
    compiled = cedar.compile_rules([as_rule(r) for r in rules])
    files["chains.json"] = _json(chains)
    files["checkpoints.json"] = _json(cps)
    files["keys.json"] = _json(
        [{"key_id": k, "public_key_pem": pem} for k, pem in sorted(trusted_keys().items())]
    )
    files["rules/policies.cedar"] = compiled.text.encode() + b"\n"
    files["rules/schema.cedarschema.json"] = cedar.SCHEMA_JSON_TEXT.encode()
    files["rules/schema.cedarschema"] = str(cedar.SCHEMA).encode()  # the same, for people
    files["rules/rules.json"] = _json(
        [
            {
                "id": r.pk,
                "cedar_id": r.cedar_id,
                "name": r.name,
                "kind": r.kind,
                "params": r.params,
                "status": r.status,
                "version": r.version,
                "activated_at": r.activated_at and format_time(r.activated_at),
                "retired_at": r.retired_at and format_time(r.retired_at),
            }
            for r in rules
        ]
    )
    kinds = {
        "records/decision.jsonl": "decision",
        "records/audit.jsonl": "audit",
        "checkpoints.json": "checkpoint",
        "rules/policies.cedar": "rules",
        "rules/schema.cedarschema.json": "rules",
        "rules/schema.cedarschema": "rules",
        "rules/rules.json": "rules",
        "keys.json": "keys",
    }
    files["index.json"] = _json(
        {
            "format": PACK_FORMAT,
            "tenant": {"id": tenant.pk, "slug": tenant.slug, "name": tenant.name},
            "from": format_time(start),
            "to": format_time(end),
            "created_at": format_time(timezone.now()),
            "key_id": kid,
            "contents": [
                {"file": name, "kind": kind, **CONTROLS[kind]}
                for name, kind in kinds.items()
                if name in files
            ],
            "notes": [
                "Records outside [from, to) may be included so that the chain runs to a "
                "signed checkpoint (chains.json: range_first_seq, range_last_seq).",
                "The Cedar schema is in Cedar's human-readable format; Amazon Verified "
                "Permissions takes the policies as they are and the schema after conversion "
                "to its JSON form (e.g. `cedar translate-schema`).",
                "Verify offline: python verify_pack.py pack.zip --public-key ledger.pem",
            ],
        }
    )
    manifest = _json(
        {
            "format": PACK_FORMAT,
            "key_id": kid,
            "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        }
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            archive.writestr(name, data)
        archive.writestr(MANIFEST, manifest)
        archive.writestr(MANIFEST_SIG, sign_manifest(manifest, key))
    return out.getvalue()
