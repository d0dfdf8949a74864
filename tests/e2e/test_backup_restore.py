"""A backup restored into a fresh database serves the same fleet, and its logs verify.

PostgreSQL: ``manage.py backup`` of the test database (pg_dump in the manifest's snapshot),
``manage.py restore`` into a new database in its own process, then gunicorn on each database
and the same API answers from both. A damaged dump and a non-empty target are refused without
touching anything. SQLite (``make up``'s embedded default): the round trip, and a restore on a
machine without the ledger key, which fails naming the key until the operator pins it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.core.management import call_command
from django.db import connection

from tenants.evidence.services import checkpoint
from tests.support.fleet import build_fleet, make_server
from tests.support.processes import ROOT, app_env, gunicorn, other_session

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

# What a customer's automation and the console read: the fleet, and the chains' verdicts.
PAGES = (
    "/api/v1/sites/",
    "/api/v1/racks/",
    "/api/v1/power-feeds/",
    "/api/v1/ultraservers/",
    "/api/v1/chips/?limit=500",
    "/api/v1/capacity/sites/",
    "/api/v1/ledger/verify/",
)


def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def public_tables(dbname: str) -> int:
    import psycopg

    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=dbname, autocommit=True
    ) as conn:
        row = conn.execute("SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert row is not None
        return row[0]


def answers(url: str, token: str) -> dict[str, object]:
    auth = {"Authorization": f"Bearer {token}", "Connection": "close"}
    found = {}
    for page in PAGES:
        response = requests.get(f"{url}{page}", headers=auth, timeout=30)
        assert response.status_code == 200, (page, response.status_code, response.text[:300])
        found[page] = response.json()
    return found


def test_a_restored_postgres_backup_serves_the_same_fleet_and_its_logs_verify(tmp_path):
    fleet = build_fleet()
    make_server("BK-SPARE-1")
    checkpoint()
    _, token = fleet_token(fleet)

    call_command("backup", str(tmp_path / "bk"))
    manifest = json.loads((tmp_path / "bk" / "manifest.json").read_text())
    assert manifest["row_counts"]["inventory_ultraserver"] == 3
    assert manifest["chain_heads"]  # every tenant's audit chain, and the provider's

    fresh = f"{connection.settings_dict['NAME']}_restored"
    with other_session(autocommit=True) as session:
        session.execute(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)')
        session.execute(f'CREATE DATABASE "{fresh}"')
    db = connection.settings_dict
    restored_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{fresh}"
    restored_env = app_env("redis://127.0.0.1:6379/15", DATABASE_URL=restored_url)
    try:
        # A dump with one byte changed is refused before the target is touched.
        damaged = tmp_path / "damaged"
        damaged.mkdir()
        for name in ("manifest.json", "database.dump"):
            (damaged / name).write_bytes((tmp_path / "bk" / name).read_bytes())
        blob = bytearray((damaged / "database.dump").read_bytes())
        blob[len(blob) // 2] ^= 0x01
        (damaged / "database.dump").write_bytes(bytes(blob))
        refused = manage("restore", str(damaged), env=restored_env)
        assert refused.returncode == 1 and "sha256" in refused.stderr, refused.stderr
        assert public_tables(fresh) == 0

        done = manage("restore", str(tmp_path / "bk"), env=restored_env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "chains verified" in done.stdout

        # Nothing is overwritten: a second restore into it is refused, and changes nothing.
        again = manage("restore", str(tmp_path / "bk"), env=restored_env)
        assert again.returncode == 1 and "has tables" in again.stderr, again.stderr

        original_env = app_env("redis://127.0.0.1:6379/15")
        with gunicorn(original_env, tmp_path / "original.log") as url:
            before = answers(url, token)
        with gunicorn(restored_env, tmp_path / "restored.log") as url:
            after = answers(url, token)
        assert after == before
        verdicts = after["/api/v1/ledger/verify/"]
        assert verdicts["ok"] and len(verdicts["chains"]) == len(manifest["chain_heads"])
    finally:
        with other_session(autocommit=True) as session:
            session.execute(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)')


def fleet_token(fleet) -> tuple[object, str]:
    client = fleet.client("provider_admin", scope="read")
    return client, client._credentials["HTTP_AUTHORIZATION"].split()[1]


def sqlite_env(var: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "factory.settings.base",
        "FACTORY_VAR_DIR": str(var),
        **extra,
    }


@pytest.mark.django_db(transaction=False)
def test_the_embedded_database_round_trips_and_a_missing_ledger_key_is_named(tmp_path):
    source = sqlite_env(tmp_path / "source")
    for step in (("migrate", "--noinput", "-v0"), ("load_demo_fleet",)):
        made = manage(*step, env=source)
        assert made.returncode == 0, made.stderr
    signed = manage("verify_logs", "--checkpoint", env=source)
    assert signed.returncode == 0, signed.stderr
    taken = manage("backup", str(tmp_path / "bk"), env=source)
    assert taken.returncode == 0, taken.stderr
    assert "not included: the ledger signing key" in taken.stdout

    # The same machine (the key file is there): restored and verified.
    (tmp_path / "same").mkdir()
    key = (tmp_path / "source" / "ledger-signing-key.pem").read_bytes()
    (tmp_path / "same" / "ledger-signing-key.pem").write_bytes(key)
    done = manage("restore", str(tmp_path / "bk"), env=sqlite_env(tmp_path / "same"))
    assert done.returncode == 0, done.stdout + done.stderr

    # A new machine without the key: restored, but the checkpoints cannot be verified, and the
    # error says which key and where its public half is.
    bare = sqlite_env(tmp_path / "bare", LEDGER_SIGNING_KEY_CREATE="0")
    unverified = manage("restore", str(tmp_path / "bk"), env=bare)
    manifest = json.loads((tmp_path / "bk" / "manifest.json").read_text())
    (signer,) = manifest["checkpoint_key_ids"]
    assert unverified.returncode == 1
    assert f"ledger keys ['{signer}']" in unverified.stderr, unverified.stderr
    # Pinning the backup's public key (after checking it) is enough to verify.
    pinned = tmp_path / "bk" / "ledger-public-keys" / f"{signer}.pem"
    rerun = tmp_path / "pinned"
    pinned_env = sqlite_env(rerun, LEDGER_SIGNING_KEY_CREATE="0")
    pinned_env["LEDGER_TRUSTED_PUBLIC_KEYS"] = str(pinned)
    done = manage("restore", str(tmp_path / "bk"), env=pinned_env)
    assert done.returncode == 0, done.stdout + done.stderr
