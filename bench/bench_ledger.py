"""Verifying the hash-chained logs over 1,000,000 records, and what chaining adds to an insert.

Verify = ``tenants.ledger.verify_pack.verify_chain`` (what ``verify_logs``, the API and the
offline verifier run) over 1M audit-shaped records, in chunks of 100k continuing one chain
(start seq and hash carried over), timed alone: per record it re-encodes the canonical form,
hashes it and checks seq, prev and digest. Baseline = plain ``hashlib.sha256`` over the *same*
canonical bytes, precomputed, in the same run: the floor no verifier can beat. Target: verify
≥ 0.05× the raw hash rate. Honestly: re-encoding each record's JSON in Python costs 10-20× the
hash itself (measured: verify runs at 0.84× of canonical encoding + sha256 alone), and a
verifier that hashed stored bytes instead would not prove the rows' content.

Insert overhead: ``DecisionRecord.objects.create`` (what a decision writes on its hot path,
chained: advisory lock, head read, id, digest) vs the plain insert of the same row with its
chain columns filled in (``Model.save`` past the linking), alternately, 1,000 each, inside one
transaction that is rolled back: the bench leaves no rows in the append-only log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import statistics
import time

from bench.common import write_result

RECORDS = int(os.environ.get("BENCH_LEDGER_RECORDS", "1000000"))
CHUNK, INSERTS, TARGET = 100_000, 1000, 0.05


def _rows(start: int, count: int):
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for i in range(start, start + count):
        yield {
            "id": i,
            "occurred_at": (base + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actor_id": 7,
            "actor_username": "jonas.weber",
            "source": "api",
            "action": "update",
            "object_type": "inventory.ultraserver",
            "object_id": str(i % 7000),
            "object_repr": f"FRA1-TRN3-{i % 7000:04d}",
            "before": {"lifecycle_state": "racked", "firmware_version": "2.1.0", "position": 3},
            "after": {"lifecycle_state": "in-service", "firmware_version": "2.1.1", "position": 3},
            "request_id": f"req-{i:012x}",
        }


def _verify_rates() -> dict:
    from tenants.ledger.verify_pack import GENESIS, canonical, verify_chain

    verify_s = raw_s = 0.0
    seq, prev, done = 1, GENESIS, 0
    while done < RECORDS:
        count = min(CHUNK, RECORDS - done)
        chunk, blobs, link = [], [], prev
        for n, row in enumerate(_rows(done + 1, count), seq):  # chained as the database does
            rec = {**row, "log": "audit", "tenant_id": 1, "chain_seq": n, "prev_hash": link}
            blob = canonical(rec)
            rec["hash"] = link = hashlib.sha256(blob).hexdigest()
            chunk.append(rec)
            blobs.append(blob)
        t0 = time.perf_counter()
        for blob in blobs:
            hashlib.sha256(blob).hexdigest()
        raw_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        report = verify_chain("audit", 1, chunk, start_seq=seq, start_prev=prev)
        verify_s += time.perf_counter() - t0
        assert report.problem is None and report.records == count, report.problem
        seq, prev, done = report.head_seq + 1, report.head_hash, done + count
        del chunk, blobs
    return {
        "verify_per_s": RECORDS / verify_s,
        "raw_sha256_per_s": RECORDS / raw_s,
        "verify_seconds": verify_s,
    }


def _insert_overhead() -> dict:
    from django.db import connection, models, transaction

    from tenants.ledger.verify_pack import GENESIS
    from tenants.sovereignty.models import DecisionRecord

    def fields(i: int) -> dict:
        return {
            "tenant_id": 2**40,  # a chain no tenant has
            "actor_username": "bench",
            "action": "place_asset",
            "principal": "",
            "resource_type": "asset",
            "resource_id": str(i),
            "resource_repr": f"asset {i}",
            "site_id": 1,
            "allowed": True,
            "rule_ids": ["platform.fail-closed"],
            "reasons": [],
        }

    chained, plain = [], []
    with transaction.atomic():
        for i in range(INSERTS):
            t0 = time.perf_counter()
            DecisionRecord.objects.create(**fields(i))
            chained.append(time.perf_counter() - t0)
            row = DecisionRecord(**{**fields(i), "tenant_id": 2**40 + 1})
            row.chain_seq, row.prev_hash, row.record_hash = i + 1, GENESIS, GENESIS
            t0 = time.perf_counter()
            models.Model.save(row, force_insert=True)
            plain.append(time.perf_counter() - t0)
        transaction.set_rollback(True)
    assert connection.vendor == "postgresql"
    c50, p50 = statistics.median(chained) * 1000, statistics.median(plain) * 1000
    return {
        "insert_chained_p50_ms": round(c50, 3),
        "insert_plain_p50_ms": round(p50, 3),
        "insert_overhead_p50_ms": round(c50 - p50, 3),
        "insert_chained_p99_ms": round(statistics.quantiles(chained, n=100)[98] * 1000, 3),
        "insert_plain_p99_ms": round(statistics.quantiles(plain, n=100)[98] * 1000, 3),
    }


def run() -> dict:
    rates = _verify_rates()
    overhead = _insert_overhead()
    return write_result(
        "ledger_verify",
        rates["verify_per_s"],
        f"records/s verified ({RECORDS:,} records, one chain)",
        rates["raw_sha256_per_s"],
        TARGET,
        lower_is_better=False,
        records=RECORDS,
        verify_seconds=round(rates["verify_seconds"], 2),
        **overhead,
    )
