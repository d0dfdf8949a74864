"""``manage.py backup [DIR]``: the database, its manifest and the ledger's public keys."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from factory.core import backup


class Command(BaseCommand):
    help = (
        "Back up the control plane's database into a new directory (default "
        "var/backups/<UTC time>): pg_dump (or an SQLite copy), a manifest taken in the same "
        "snapshot (migrations, rows per table, chain heads, sha256) and the ledger's public "
        "keys. The ledger's private signing key is not included: back it up with your secrets."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", nargs="?", help="a new or empty directory")

    def handle(self, *args, directory=None, **options):
        if directory is None:
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            directory = str(Path(settings.VAR_DIR) / "backups" / stamp)
        out = Path(directory)
        try:
            manifest = backup.backup(out)
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from exc
        rows = sum(manifest["row_counts"].values())
        self.stdout.write(
            f"backup {out}: {manifest['engine']}, {len(manifest['row_counts'])} tables, "
            f"{rows} rows, {len(manifest['chain_heads'])} chains, sha256 {manifest['sha256']}"
        )
        self.stdout.write(
            f"not included: the ledger signing key {settings.LEDGER_SIGNING_KEY_FILE} "
            "(keep it in your secret store)"
        )
