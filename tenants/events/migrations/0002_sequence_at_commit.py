"""Event sequence numbers in commit order (see tenants/events/models/events.py).

PostgreSQL: a deferred constraint trigger fires at COMMIT, takes a transaction-level advisory
lock (held until the commit is visible) and draws the next number, so numbers appear to readers
in order and resume-by-sequence never skips a late committer. The lock is taken at the very end
of the transaction, after every row lock, so it cannot be part of a deadlock.
SQLite (single writer): an insert trigger copies the id.
"""

from django.db import migrations

# "EVTS" — any constant unique to this lock's purpose.
LOCK_KEY = 0x45565453

POSTGRES_UP = f"""
CREATE SEQUENCE events_event_commit_sequence;
CREATE OR REPLACE FUNCTION events_event_assign_sequence() RETURNS trigger AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK_KEY});
    UPDATE events_event SET sequence = nextval('events_event_commit_sequence')
        WHERE id = NEW.id AND sequence IS NULL;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER events_event_sequence_at_commit
    AFTER INSERT ON events_event DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION events_event_assign_sequence();
"""
POSTGRES_DOWN = """
DROP TRIGGER IF EXISTS events_event_sequence_at_commit ON events_event;
DROP FUNCTION IF EXISTS events_event_assign_sequence();
DROP SEQUENCE IF EXISTS events_event_commit_sequence;
"""
SQLITE_UP = [
    """CREATE TRIGGER events_event_sequence_is_id AFTER INSERT ON events_event
       BEGIN UPDATE events_event SET sequence = NEW.id WHERE id = NEW.id; END;""",
]
SQLITE_DOWN = ["DROP TRIGGER IF EXISTS events_event_sequence_is_id;"]


def up(apps, schema_editor):
    run(schema_editor, POSTGRES_UP, SQLITE_UP)


def down(apps, schema_editor):
    run(schema_editor, POSTGRES_DOWN, SQLITE_DOWN)


def run(schema_editor, postgres, sqlite):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(postgres)
    elif vendor == "sqlite":
        for statement in sqlite:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("events", "0001_initial")]
    operations = [migrations.RunPython(up, down)]
