"""``manage.py restore DIR``: into the configured, empty database, then proved against the
backup's manifest."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from factory.core import backup


class Command(BaseCommand):
    help = (
        "Restore a backup (manage.py backup) into the configured database, which must be empty, "
        "then compare it with the backup's manifest (migrations, rows per table, chain heads) "
        "and verify every hash-chained log against the pinned ledger keys. Exit 1 on any "
        "difference."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", help="a directory written by manage.py backup")

    def handle(self, *args, directory, **options):
        try:
            report = backup.restore(Path(directory))
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from exc
        for problem in report.problems:
            self.stderr.write(f"MISMATCH: {problem}")
        if report.problems:
            raise CommandError(
                f"restored, but {len(report.problems)} check(s) failed: do not serve this "
                "database until they are understood"
            )
        self.stdout.write(
            f"OK: restored {report.tables} tables, {report.rows} rows; "
            f"{report.chains} chains verified"
        )
