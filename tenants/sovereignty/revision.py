"""The sovereignty revision: what lets a process keep decision facts in memory and never use a
stale one after the change that made it stale commits.

``sovereignty_revision`` holds one tiny row per *scope*: a tenant id, or ``0`` for facts every
tenant sees (built-in jurisdiction groups, provider facts that are not a tenant's). Each row's
``value`` is drawn from the sequence ``sovereignty_revision_seq``, so it never repeats, not even
after a rolled-back transaction (a counter ``+ 1`` would come back to a number a rolled-back
write had used, and a cache filled inside that transaction would look current).

Writers bump it **in the same transaction** as the fact they change, by a database trigger, so
that nothing that writes facts (ORM, ``bulk_create``, ``QuerySet.update``, raw SQL, the admin, a
data migration) can forget. Readers (``services.decisions.decision_context``) fill their cache
from one statement that reads the facts *and* the revisions together (one snapshot), and on the
hot path read only the revision rows of the scopes an entry depends on (one indexed lookup of at
most three rows). A change is visible to a reader exactly when its revision is, i.e. at commit.

Attaching a table whose rows are decision facts (in a migration, PostgreSQL only)::

    from tenants.sovereignty.revision import attach_sql, detach_sql

    migrations.RunSQL(attach_sql("sovereignty_keystore", "tenant_id"),
                      detach_sql("sovereignty_keystore"))

``tenant_column`` names the column holding the owning tenant (NULL → scope 0); pass ``None``
for a table whose rows concern every tenant (every change bumps scope 0). ``TRUNCATE`` bumps
scope 0. Python code that changes facts the database cannot see (a file, a setting) calls
``bump(reason, scope)`` inside its transaction.

Costs and cautions: a write of facts holds its scope's revision row lock until commit, so two
transactions writing the same tenant's facts serialise at that row (they rarely overlap; the
lock is taken by the first fact write). Never truncate or rewrite ``sovereignty_revision``
itself: a missing row reads as 0, which only a never-bumped scope may have.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

TABLE = "sovereignty_revision"
GLOBAL = 0  # the scope of facts that are no single tenant's

#: The table, the sequence and the trigger functions (run once, by migration 0010).
INSTALL_SQL = f"""
CREATE SEQUENCE IF NOT EXISTS sovereignty_revision_seq;
CREATE TABLE IF NOT EXISTS {TABLE} (
    scope bigint PRIMARY KEY,
    value bigint NOT NULL
);
CREATE OR REPLACE FUNCTION sovereignty_bump(p_scope bigint) RETURNS void AS $$
    INSERT INTO {TABLE} (scope, value) VALUES (p_scope, nextval('sovereignty_revision_seq'))
    ON CONFLICT (scope) DO UPDATE SET value = EXCLUDED.value;
$$ LANGUAGE sql;
CREATE OR REPLACE FUNCTION sovereignty_revision_row() RETURNS trigger AS $$
DECLARE
    old_scope bigint;
    new_scope bigint;
BEGIN
    IF TG_NARGS = 0 OR TG_ARGV[0] IS NULL OR TG_ARGV[0] = '' THEN
        PERFORM sovereignty_bump(0);
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_scope := coalesce((to_jsonb(OLD) ->> TG_ARGV[0])::bigint, 0);
        PERFORM sovereignty_bump(old_scope);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        new_scope := coalesce((to_jsonb(NEW) ->> TG_ARGV[0])::bigint, 0);
        IF old_scope IS DISTINCT FROM new_scope THEN
            PERFORM sovereignty_bump(new_scope);
        END IF;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION sovereignty_revision_all() RETURNS trigger AS $$
BEGIN
    PERFORM sovereignty_bump(0);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""
UNINSTALL_SQL = f"""
DROP FUNCTION IF EXISTS sovereignty_revision_all();
DROP FUNCTION IF EXISTS sovereignty_revision_row();
DROP FUNCTION IF EXISTS sovereignty_bump(bigint);
DROP TABLE IF EXISTS {TABLE};
DROP SEQUENCE IF EXISTS sovereignty_revision_seq;
"""


def attach_sql(table: str, tenant_column: str | None) -> str:
    """SQL that makes every change of ``table``'s rows bump its tenant's revision. It does
    nothing for a table that does not exist (yet), so that a list of fact tables can be attached
    by one migration whatever another part has created by then; re-attaching replaces."""
    arg = f"''{tenant_column}''" if tenant_column else ""
    return f"""
DO $$
BEGIN
    IF to_regclass('{table}') IS NOT NULL THEN
        EXECUTE 'DROP TRIGGER IF EXISTS {table}_revision ON {table}';
        EXECUTE 'DROP TRIGGER IF EXISTS {table}_revision_truncate ON {table}';
        EXECUTE 'CREATE TRIGGER {table}_revision AFTER INSERT OR UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION sovereignty_revision_row({arg})';
        EXECUTE 'CREATE TRIGGER {table}_revision_truncate AFTER TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION sovereignty_revision_all()';
    END IF;
END $$;
"""


def detach_sql(table: str) -> str:
    """The reverse of ``attach_sql``."""
    return f"""
DO $$
BEGIN
    IF to_regclass('{table}') IS NOT NULL THEN
        EXECUTE 'DROP TRIGGER IF EXISTS {table}_revision ON {table}';
        EXECUTE 'DROP TRIGGER IF EXISTS {table}_revision_truncate ON {table}';
    END IF;
END $$;
"""


def bump(reason: str, scope: int = GLOBAL) -> None:
    """Mark ``scope``'s facts changed, in the caller's transaction (for changes no trigger sees).
    Off PostgreSQL nothing is cached, so there is nothing to invalidate."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    log.debug("sovereignty revision bump (scope %s): %s", scope, reason)
    with connection.cursor() as cursor:
        cursor.execute("SELECT sovereignty_bump(%s)", [scope])


def current(scopes: tuple[int, ...]) -> dict[int, int]:
    """The revision of each of ``scopes`` now (0 for a scope never bumped): one tiny read."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT scope, value FROM {TABLE} WHERE scope = ANY(%s)", [list(scopes)])
        found = dict(cursor.fetchall())
    return {scope: found.get(scope, 0) for scope in scopes}
