"""One sample per (server, Timestamp), on the largest table, without locking it.

The samples stored twice before (the same server and Timestamp) are cut to the first one
stored, while the old (server, ts) index still serves that self-join. On PostgreSQL the unique
index is then built ``CONCURRENTLY`` (writes go on meanwhile), becomes the constraint by
``ADD CONSTRAINT … UNIQUE USING INDEX`` (a brief lock, no scan), and the old index is dropped
``CONCURRENTLY``: so the migration is not atomic. A run that stopped half way can be run again:
an invalid leftover index is dropped first, and each step is skipped when it is done.

Django's state is the same as for ``RemoveIndex`` + ``AddConstraint``; other databases
(SQLite, for ``make up``) get the equivalent unique index the ordinary way.
"""

from django.db import migrations, models

TABLE = "telemetry_serversample"
OLD_INDEX = "sample_server_ts"
UNIQUE = "sample_unique_server_ts"

#: Portable (PostgreSQL and SQLite): a later copy of a (server, ts) already stored goes.
DEDUPLICATE = f"""
DELETE FROM {TABLE} WHERE id IN (
    SELECT later.id FROM {TABLE} AS later
    JOIN {TABLE} AS earlier
      ON later.ultraserver_id = earlier.ultraserver_id AND later.ts = earlier.ts
     AND later.id > earlier.id
)
"""


def _exists(cursor, sql: str, params: list) -> bool:
    cursor.execute(sql, params)
    return cursor.fetchone() is not None


def forwards(apps, schema_editor) -> None:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(DEDUPLICATE)
            cursor.execute(
                f"CREATE UNIQUE INDEX IF NOT EXISTS {UNIQUE} ON {TABLE} (ultraserver_id, ts)"
            )
            cursor.execute(f"DROP INDEX IF EXISTS {OLD_INDEX}")
            return
        constraint = _exists(cursor, "SELECT 1 FROM pg_constraint WHERE conname = %s", [UNIQUE])
        if not constraint:
            # A build that failed (a duplicate written meanwhile) leaves an invalid index.
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {UNIQUE}")
            cursor.execute(DEDUPLICATE)
            cursor.execute(
                f"CREATE UNIQUE INDEX CONCURRENTLY {UNIQUE} ON {TABLE} (ultraserver_id, ts)"
            )
            cursor.execute(
                f"ALTER TABLE {TABLE} ADD CONSTRAINT {UNIQUE} UNIQUE USING INDEX {UNIQUE}"
            )
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {OLD_INDEX}")


def backwards(apps, schema_editor) -> None:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {OLD_INDEX} ON {TABLE} (ultraserver_id, ts)"
            )
            cursor.execute(f"DROP INDEX IF EXISTS {UNIQUE}")
            return
        cursor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {OLD_INDEX} ON {TABLE} (ultraserver_id, ts)"
        )
        cursor.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT IF EXISTS {UNIQUE}")


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("telemetry", "0004_epochs"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="serversample", name=OLD_INDEX),
                migrations.AddConstraint(
                    model_name="serversample",
                    constraint=models.UniqueConstraint(fields=("ultraserver", "ts"), name=UNIQUE),
                ),
            ],
            database_operations=[migrations.RunPython(forwards, backwards, elidable=False)],
        ),
    ]
