"""A database guard for append-only tables: rows can be inserted, never updated or deleted, not
even by raw SQL (TRUNCATE is left to the table owner). Migrations call ``guard(table, what)``."""

from __future__ import annotations

from django.db import migrations


def _statements(table: str, what: str, vendor: str) -> tuple[list[str], list[str]]:
    if vendor == "postgresql":
        up = [
            f"""CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '{what} are append-only: % refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$ LANGUAGE plpgsql;""",
            f"""CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION {table}_append_only();""",
        ]
        down = [
            f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table};",
            f"DROP FUNCTION IF EXISTS {table}_append_only();",
        ]
        return up, down
    if vendor == "sqlite":
        up = [
            f"""CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table}
                BEGIN SELECT RAISE(ABORT, '{what} are append-only: {op} refused'); END;"""
            for op in ("UPDATE", "DELETE")
        ]
        down = [f"DROP TRIGGER IF EXISTS {table}_no_{op};" for op in ("update", "delete")]
        return up, down
    raise RuntimeError(f"no append-only guard for database vendor {vendor!r}")


def guard(table: str, what: str) -> migrations.RunPython:
    def install(apps, schema_editor):
        for statement in _statements(table, what, schema_editor.connection.vendor)[0]:
            schema_editor.execute(statement, params=None)

    def uninstall(apps, schema_editor):
        for statement in _statements(table, what, schema_editor.connection.vendor)[1]:
            schema_editor.execute(statement, params=None)

    return migrations.RunPython(install, uninstall)
