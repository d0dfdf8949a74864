"""A database guard for append-only tables: rows can be inserted, never updated or deleted, not
even by raw SQL (TRUNCATE is left to the table owner). Migrations call ``guard(table, what)``;
``chain_existing(app, model, log)`` links the rows a table already has into hash chains (once,
when the chain columns arrive: the guard is lifted for that migration's transaction only)."""

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


def chain_existing(app_label: str, model_name: str, log: str) -> migrations.RunPython:
    """Chain a table's existing rows per tenant in (occurred_at, id) order, as ``link`` would
    have. The reverse leaves them: the columns go with the field removal."""

    def forwards(apps, schema_editor):
        from tenants.ledger.verify_pack import GENESIS, digest
        from tenants.models.audit import ledger_content

        model = apps.get_model(app_label, model_name)
        table = model._meta.db_table
        heads: dict[int | None, tuple[int, str]] = {}
        rows = []
        for values in model.objects.order_by("occurred_at", "id").values().iterator(2000):
            seq, prev = heads.get(values["tenant_id"], (0, GENESIS))
            values.update(chain_seq=seq + 1, prev_hash=prev)
            values["record_hash"] = digest(ledger_content(model, values, log))
            heads[values["tenant_id"]] = (seq + 1, values["record_hash"])
            rows.append((seq + 1, prev, values["record_hash"], values["id"]))
        if not rows:
            return
        postgres = schema_editor.connection.vendor == "postgresql"
        with schema_editor.connection.cursor() as cursor:
            if postgres:
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_no_update_delete")
            else:
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            cursor.executemany(
                f"UPDATE {table} SET chain_seq = %s, prev_hash = %s, record_hash = %s "
                "WHERE id = %s",
                rows,
            )
            if postgres:
                cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_no_update_delete")
            else:
                cursor.execute(
                    f"""CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
                    BEGIN SELECT RAISE(ABORT, 'rows are append-only: UPDATE refused'); END;"""
                )

    return migrations.RunPython(forwards, migrations.RunPython.noop)
