"""The previous version still serves on the migrated schema: a rolling upgrade's first step.

During an upgrade the new code migrates the database while replicas of the previous version
still serve it. So every migration must leave a schema the previous code can read **and
write**: no dropped or renamed column or table it still uses, no new NOT NULL column without
a database default (``db_default``; Django's ``default`` lives in Python only, so the old code's
INSERT leaves it NULL).

This check takes the previous version (``COMPAT_BASE``, default: the parent of the newest
commit that added a migration), migrates a fresh PostgreSQL database with the code checked out
here, then runs the previous version's code on it: its demo fleet loaded through its own
services (every kind of row written), its logs checkpointed and verified; then this version
verifies the chains the previous one wrote. Run by ``make migration-compat`` in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def previous_version() -> str | None:
    """``COMPAT_BASE``, or the parent of the newest commit adding a migration file."""
    if os.environ.get("COMPAT_BASE"):
        return git("rev-parse", "--verify", os.environ["COMPAT_BASE"])
    newest = git("log", "-1", "--diff-filter=A", "--format=%H", "--", "*/migrations/0*.py")
    if not newest:
        return None
    try:
        return git("rev-parse", "--verify", f"{newest}^")
    except subprocess.CalledProcessError:
        return None  # the first commit, or a shallow clone


def server_url() -> str:
    """The PostgreSQL server the tests use, without its database name."""
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/factory")
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def psql(sql: str) -> None:
    parts = urlsplit(server_url())
    subprocess.run(
        [
            "psql",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            parts.hostname or "127.0.0.1",
            "-p",
            str(parts.port or 5432),
            "-U",
            parts.username or "postgres",
            "-d",
            "postgres",
            "-c",
            sql,
        ],
        check=True,
    )


def step(what: str, cwd: Path, env: dict[str, str], *args: str) -> None:
    print(f"migration-compat: {what}: manage.py {' '.join(args)}", flush=True)
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        sys.stdout.write(done.stdout[-3000:])
        sys.stderr.write(done.stderr[-6000:])
        raise SystemExit(f"migration-compat: FAILED at {what} (exit {done.returncode})")


def main() -> int:
    base = previous_version()
    if base is None:
        print("migration-compat: no previous version with migrations in this clone; skipped")
        return 0
    head = git("rev-parse", "HEAD")
    print(f"migration-compat: previous version {base[:10]} on the schema of {head[:10]}")
    work = Path(tempfile.mkdtemp(prefix="migration-compat-"))
    old = work / "previous"
    old.mkdir()
    archive = subprocess.run(
        ["git", "archive", base], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    database = f"factory_compat_{os.getpid()}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "factory.settings.base",
        "DATABASE_URL": f"{server_url()}/{database}",
        "FACTORY_VAR_DIR": str(work / "var"),  # the ledger key both versions sign with
    }
    psql(f'CREATE DATABASE "{database}"')
    try:
        step("this version migrates", ROOT, env, "migrate", "--noinput", "-v0")
        step("the previous version writes its demo fleet", old, env, "load_demo_fleet")
        step("the previous version signs and verifies", old, env, "verify_logs", "--checkpoint")
        step("this version verifies what it wrote", ROOT, env, "verify_logs")
    finally:
        psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)
    print("migration-compat: OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
