"""Chip counts per server, kept by triggers on ``inventory_chip`` (see ``ChipCounts``).

PostgreSQL: one statement-level trigger per event, reading the statement's transition tables,
so a bulk insert of a server's 144 chips is one upsert, and an ``UPDATE`` that changes no
health (or server) writes nothing. SQLite (``make up``'s embedded default): row-level
triggers doing the same. Counts go by deltas, never recounted inside a trigger, so two
transactions changing chips of one server both count (a recount would see only its own).
Existing chips are counted once here.
"""

import django.db.models.deletion
from django.db import migrations, models

STATES = ("ok", "degraded", "failed", "unknown")

_SUMS = ", ".join(f"SUM(CASE WHEN health = '{s}' THEN n ELSE 0 END) AS {s}" for s in STATES)
_ADD = ", ".join(f"{s} = inventory_chipcounts.{s} + EXCLUDED.{s}" for s in STATES)
_COLUMNS = ", ".join(STATES)

#: The deltas a statement makes, per server, applied as one upsert.
_APPLY = f"""
    INSERT INTO inventory_chipcounts (ultraserver_id, {_COLUMNS})
    SELECT ultraserver_id, {_SUMS}
    FROM (%s) AS delta
    GROUP BY ultraserver_id
    HAVING {" OR ".join(f"SUM(CASE WHEN health = '{s}' THEN n ELSE 0 END) <> 0" for s in STATES)}
    ON CONFLICT (ultraserver_id) DO UPDATE SET {_ADD};
"""
_NEW = "SELECT ultraserver_id, health, 1 AS n FROM new_chips"
_OLD = "SELECT ultraserver_id, health, -1 AS n FROM old_chips"

POSTGRES_FORWARD = f"""
CREATE FUNCTION inventory_chip_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_APPLY % _NEW}
    ELSIF TG_OP = 'DELETE' THEN
        {_APPLY % _OLD}
    ELSE
        {_APPLY % (_NEW + " UNION ALL " + _OLD)}
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER inventory_chip_counts_insert AFTER INSERT ON inventory_chip
    REFERENCING NEW TABLE AS new_chips
    FOR EACH STATEMENT EXECUTE FUNCTION inventory_chip_counts();
CREATE TRIGGER inventory_chip_counts_update AFTER UPDATE ON inventory_chip
    REFERENCING OLD TABLE AS old_chips NEW TABLE AS new_chips
    FOR EACH STATEMENT EXECUTE FUNCTION inventory_chip_counts();
CREATE TRIGGER inventory_chip_counts_delete AFTER DELETE ON inventory_chip
    REFERENCING OLD TABLE AS old_chips
    FOR EACH STATEMENT EXECUTE FUNCTION inventory_chip_counts();
"""
POSTGRES_BACKWARD = """
DROP TRIGGER IF EXISTS inventory_chip_counts_insert ON inventory_chip;
DROP TRIGGER IF EXISTS inventory_chip_counts_update ON inventory_chip;
DROP TRIGGER IF EXISTS inventory_chip_counts_delete ON inventory_chip;
DROP FUNCTION IF EXISTS inventory_chip_counts();
"""


def _row(sign: str, row: str) -> str:
    values = ", ".join(f"{sign}({row}.health = '{s}')" for s in STATES)
    return f"""
        INSERT INTO inventory_chipcounts (ultraserver_id, {_COLUMNS})
        VALUES ({row}.ultraserver_id, {values})
        ON CONFLICT (ultraserver_id) DO UPDATE SET {_ADD};"""


SQLITE_FORWARD = [
    f"""CREATE TRIGGER inventory_chip_counts_insert AFTER INSERT ON inventory_chip
    BEGIN {_row("", "NEW")} END;""",
    f"""CREATE TRIGGER inventory_chip_counts_delete AFTER DELETE ON inventory_chip
    BEGIN {_row("-", "OLD")} END;""",
    f"""CREATE TRIGGER inventory_chip_counts_update AFTER UPDATE OF health, ultraserver_id
    ON inventory_chip
    WHEN OLD.health IS NOT NEW.health OR OLD.ultraserver_id IS NOT NEW.ultraserver_id
    BEGIN {_row("-", "OLD")} {_row("", "NEW")} END;""",
]
SQLITE_BACKWARD = [
    f"DROP TRIGGER IF EXISTS inventory_chip_counts_{event}"
    for event in ("insert", "update", "delete")
]

BACKFILL = f"""
INSERT INTO inventory_chipcounts (ultraserver_id, {_COLUMNS})
SELECT ultraserver_id, {", ".join(f"SUM(CASE WHEN health = '{s}' THEN 1 ELSE 0 END)" for s in STATES)}
FROM inventory_chip GROUP BY ultraserver_id
"""


def forward(apps, schema_editor):
    statements = (
        [POSTGRES_FORWARD] if schema_editor.connection.vendor == "postgresql" else SQLITE_FORWARD
    )
    for sql in [*statements, BACKFILL]:
        schema_editor.execute(sql)


def backward(apps, schema_editor):
    statements = (
        [POSTGRES_BACKWARD] if schema_editor.connection.vendor == "postgresql" else SQLITE_BACKWARD
    )
    for sql in statements:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0008_chip_unwell_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="ChipCounts",
            fields=[
                (
                    "ultraserver",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="chip_counts",
                        serialize=False,
                        to="inventory.ultraserver",
                    ),
                ),
                ("ok", models.IntegerField(default=0)),
                ("degraded", models.IntegerField(default=0)),
                ("failed", models.IntegerField(default=0)),
                ("unknown", models.IntegerField(default=0)),
            ],
            options={
                "verbose_name": "chip counts",
                "verbose_name_plural": "chip counts",
            },
        ),
        migrations.RunPython(forward, backward, elidable=False),
    ]
