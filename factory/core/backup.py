"""Backup and restore of the control plane's database, with a manifest that proves the restore.

A backup is a directory: the database (``pg_dump`` custom format on PostgreSQL, an SQLite
online-backup copy on the embedded default), ``manifest.json`` and the ledger's public keys.
The manifest is taken **in the same snapshot as the dump** (PostgreSQL: a REPEATABLE READ
transaction whose exported snapshot ``pg_dump --snapshot`` reads), so on a live system its
row counts and chain heads describe exactly what the dump holds. It records:

- the dump's sha256, so a damaged file is refused before the target database is touched;
- every applied migration, so a dump is never restored under code that expects another schema
  without it being said;
- the row count of every table of the project's models, and the head (seq, hash) of every
  hash-chained log, so a restore that lost rows says which table;
- the public keys of the ledger (``LedgerKey``): checkpoints verify only against keys pinned
  outside the database (``LEDGER_SIGNING_KEY_FILE``, ``LEDGER_TRUSTED_PUBLIC_KEYS``); the
  files are there for the operator to pin, not trusted because they are in the backup.

The ledger's *private* signing key is never in a backup: it is a secret and lives in the
secret store, backed up on its own.

Restore goes into an **empty** database only (nothing is overwritten), then compares the
restored database with the manifest and walks every chain (``verify_logs``). Each mismatch is
reported; any one fails the restore.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.apps import apps
from django.db import connection

FORMAT = "aifactory-backup-v1"
MANIFEST = "manifest.json"
KEYS_DIR = "ledger-public-keys"
PG_DUMP = "database.dump"
SQLITE_COPY = "database.sqlite3"
# The apps whose tables a manifest counts: the project's own (Django's and libraries' tables
# are restored too, but are not the fleet or the evidence).
PROJECT_PACKAGES = ("factory", "provisioning", "tenants")


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says what to do."""


@dataclass
class RestoreReport:
    """What a restore compared; ``problems`` empty means the restored database is the backup."""

    tables: int = 0
    rows: int = 0
    chains: int = 0
    problems: list[str] = field(default_factory=list)


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def counted_tables() -> list[str]:
    """The tables of the project's concrete models (M2M tables included), sorted."""
    tables = set()
    for model in apps.get_models(include_auto_created=True):
        meta = model._meta
        if meta.managed and not meta.proxy and model.__module__.startswith(PROJECT_PACKAGES):
            tables.add(meta.db_table)
    return sorted(tables)


def chained_tables() -> dict[str, str]:
    """Each hash-chained log's name → its table (the logs ``verify_logs`` walks)."""
    from tenants.evidence.services import LOGS

    return {log: model._meta.db_table for log, model in LOGS.items()}


def _describe(cursor: Any, quote: Any) -> dict[str, Any]:
    """Migrations, row counts and chain heads as ``cursor`` sees them (DB-API, either engine)."""
    cursor.execute("SELECT app, name FROM django_migrations ORDER BY app, name")
    migrations = [f"{app}.{name}" for app, name in cursor.fetchall()]
    counts = {}
    for table in counted_tables():
        cursor.execute(f"SELECT COUNT(*) FROM {quote(table)}")
        counts[table] = cursor.fetchone()[0]
    heads = {}
    for log, table in chained_tables().items():
        t = quote(table)
        # No parameters: the same SQL runs on psycopg, Django's and sqlite3's cursors.
        cursor.execute(
            f"SELECT r.tenant_id, r.chain_seq, r.record_hash FROM {t} r JOIN "
            f"(SELECT tenant_id, MAX(chain_seq) AS head FROM {t} GROUP BY tenant_id) h "
            "ON r.chain_seq = h.head AND (r.tenant_id = h.tenant_id "
            "OR (r.tenant_id IS NULL AND h.tenant_id IS NULL))"
        )
        for tenant_id, seq, record_hash in cursor.fetchall():
            chain = "provider" if tenant_id is None else str(tenant_id)
            heads[f"{log}/{chain}"] = {"seq": seq, "hash": record_hash}
    heads = dict(sorted(heads.items()))
    return {"migrations": migrations, "row_counts": counts, "chain_heads": heads}


def _ledger_keys(cursor: Any) -> tuple[dict[str, str], list[str]]:
    """The ledger's public keys as the database lists them (for the operator to pin), and the
    key ids the stored checkpoints are signed with."""
    from tenants.models.audit import Checkpoint, LedgerKey

    cursor.execute(f"SELECT key_id, public_key_pem FROM {LedgerKey._meta.db_table}")
    keys = dict(sorted(cursor.fetchall()))
    cursor.execute(f"SELECT DISTINCT key_id FROM {Checkpoint._meta.db_table}")
    return keys, sorted(row[0] for row in cursor.fetchall())


# --- PostgreSQL -------------------------------------------------------------------------------


def _pg_env_and_dsn() -> tuple[dict[str, str], str]:
    """libpq's environment for the configured database: the password stays out of argv."""
    db = connection.settings_dict
    env = {**os.environ}
    for var, key in (("PGHOST", "HOST"), ("PGPORT", "PORT"), ("PGUSER", "USER")):
        if db.get(key):
            env[var] = str(db[key])
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    return env, str(db["NAME"])


def _run_pg_tool(tool: str, *args: str, failed: str) -> None:
    """Run ``pg_dump`` / ``pg_restore`` on the configured database; a failure names ``failed``."""
    found = shutil.which(tool)
    if found is None:
        raise BackupError(f"{tool} is not installed (Debian: postgresql-client)")
    env, _name = _pg_env_and_dsn()
    result = subprocess.run(
        [found, "--no-owner", "--no-privileges", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BackupError(f"{tool} failed{failed}: {result.stderr.strip()}")


@contextmanager
def _pg_snapshot() -> Iterator[tuple[Any, str]]:
    """A read-only REPEATABLE READ session on the configured database and its exported
    snapshot: what ``pg_dump --snapshot`` and the manifest both read."""
    import psycopg

    env, name = _pg_env_and_dsn()
    with psycopg.connect(
        dbname=name,
        host=env.get("PGHOST"),
        port=env.get("PGPORT"),
        user=env.get("PGUSER"),
        password=env.get("PGPASSWORD"),
    ) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_export_snapshot()")
            row = cursor.fetchone()
            assert row is not None
            yield cursor, row[0]
        conn.rollback()


def _quote(name: str) -> str:
    """An SQL identifier, quoted the same way on PostgreSQL and SQLite."""
    return '"' + name.replace('"', '""') + '"'


def _backup_postgres(out: Path) -> dict[str, Any]:
    name = str(connection.settings_dict["NAME"])
    dump = out / PG_DUMP
    with _pg_snapshot() as (cursor, snapshot):
        _run_pg_tool(
            "pg_dump",
            "--format=custom",
            f"--snapshot={snapshot}",
            f"--file={dump}",
            name,
            failed="",
        )
        described = _describe(cursor, _quote)
        keys, signers = _ledger_keys(cursor)
    return {
        "engine": "postgresql",
        "file": PG_DUMP,
        **described,
        "ledger_keys": keys,
        "checkpoint_key_ids": signers,
    }


def _database_is_empty_postgres() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
        )
        return cursor.fetchone()[0] == 0


def _restore_postgres(source: Path) -> None:
    if not _database_is_empty_postgres():
        raise BackupError(
            f"database {connection.settings_dict['NAME']!r} has tables: restore goes into an "
            "empty database only (createdb a new one and point DATABASE_URL at it)"
        )
    connection.close()  # pg_restore runs in its own session
    _run_pg_tool(
        "pg_restore",
        "--exit-on-error",
        "--single-transaction",
        f"--dbname={connection.settings_dict['NAME']}",
        str(source),
        failed=" (nothing restored)",
    )


# --- SQLite (the embedded default of ``make up``) ---------------------------------------------


def _backup_sqlite(out: Path) -> dict[str, Any]:
    copy = out / SQLITE_COPY
    source = sqlite3.connect(str(connection.settings_dict["NAME"]))
    target = sqlite3.connect(str(copy))
    try:
        source.backup(target)  # the online backup API: a consistent copy of a live database
    finally:
        source.close()
    try:
        cursor = target.cursor()
        described = _describe(cursor, _quote)
        keys, signers = _ledger_keys(cursor)
    finally:
        target.close()
    return {
        "engine": "sqlite",
        "file": SQLITE_COPY,
        **described,
        "ledger_keys": keys,
        "checkpoint_key_ids": signers,
    }


def _restore_sqlite(source: Path) -> None:
    target = Path(connection.settings_dict["NAME"])
    connection.close()
    if target.exists() and target.stat().st_size > 0:
        check = sqlite3.connect(str(target))
        try:
            tables = check.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'")
            has_tables = tables.fetchone()[0] > 0
        finally:
            check.close()
        if has_tables:
            raise BackupError(
                f"{target} has tables: restore goes into an empty database only "
                "(move it aside or set DATABASE_URL to a new file)"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    src, dst = sqlite3.connect(str(source)), sqlite3.connect(str(target))
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


# --- The two operations -----------------------------------------------------------------------


def backup(out: Path) -> dict[str, Any]:
    """Write a backup of the configured database into the new directory ``out``; return the
    manifest."""
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} exists and is not empty: a backup goes into a new directory")
    out.mkdir(parents=True, exist_ok=True)
    taken = dt.datetime.now(dt.UTC)
    described = _backup_postgres(out) if _is_postgres() else _backup_sqlite(out)
    keys = described.pop("ledger_keys")
    (out / KEYS_DIR).mkdir()
    for kid, pem in keys.items():
        (out / KEYS_DIR / f"{kid}.pem").write_text(pem)
    manifest = {
        "format": FORMAT,
        "taken_at": taken.isoformat(),
        "sha256": _sha256(out / described["file"]),
        **described,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(source: Path) -> dict[str, Any]:
    path = source / MANIFEST
    if not path.is_file():
        raise BackupError(f"{source} is not a backup: no {MANIFEST}")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: unknown format {manifest.get('format')!r}")
    engine = "postgresql" if _is_postgres() else "sqlite"
    if manifest["engine"] != engine:
        raise BackupError(
            f"the backup is of {manifest['engine']}, the configured database is {engine}"
        )
    data = source / manifest["file"]
    if not data.is_file() or _sha256(data) != manifest["sha256"]:
        raise BackupError(f"{data} does not match the manifest's sha256: damaged or altered")
    return manifest


def restore(source: Path) -> RestoreReport:
    """Restore the backup in ``source`` into the configured, empty database and compare the
    result with the manifest (migrations, every table's rows, chain heads, every chain
    verified against the pinned ledger keys)."""
    manifest = read_manifest(source)  # before anything is touched
    data = source / manifest["file"]
    if manifest["engine"] == "postgresql":
        _restore_postgres(data)
    else:
        _restore_sqlite(data)
    return compare(manifest)


def compare(manifest: dict[str, Any]) -> RestoreReport:
    """The configured database against a backup's manifest."""
    from tenants.evidence.keys import trusted_keys
    from tenants.evidence.services import verify_logs

    with connection.cursor() as cursor:
        found = _describe(cursor, _quote)
    report = RestoreReport(tables=len(found["row_counts"]), rows=sum(found["row_counts"].values()))
    if found["migrations"] != manifest["migrations"]:
        missing = sorted(set(manifest["migrations"]) - set(found["migrations"]))
        extra = sorted(set(found["migrations"]) - set(manifest["migrations"]))
        report.problems.append(f"migrations differ: missing {missing}, not in backup {extra}")
    for table, rows in manifest["row_counts"].items():
        if found["row_counts"].get(table) != rows:
            report.problems.append(
                f"{table}: {found['row_counts'].get(table)} rows, the backup has {rows}"
            )
    if found["chain_heads"] != manifest["chain_heads"]:
        report.problems.append("chain heads differ from the backup's")
    untrusted = sorted(set(manifest["checkpoint_key_ids"]) - set(trusted_keys()))
    if untrusted:
        report.problems.append(
            f"checkpoints signed by ledger keys {untrusted} cannot be verified here: restore "
            "LEDGER_SIGNING_KEY_FILE from the secret store, or add the public keys in "
            f"{KEYS_DIR}/ to LEDGER_TRUSTED_PUBLIC_KEYS once you have checked them"
        )
    chains = verify_logs()
    report.chains = len(chains)
    report.problems += [f"{r.log} chain {r.tenant_id}: {r.problem}" for r in chains if r.problem]
    return report
