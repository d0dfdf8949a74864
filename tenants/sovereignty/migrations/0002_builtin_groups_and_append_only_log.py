"""Built-in jurisdiction groups (EU, EEA) and a database guard that keeps the access-transparency
log append-only (like the audit log)."""

from django.db import migrations

EU = [
    "AT",
    "BE",
    "BG",
    "HR",
    "CY",
    "CZ",
    "DK",
    "EE",
    "FI",
    "FR",
    "DE",
    "GR",
    "HU",
    "IE",
    "IT",
    "LV",
    "LT",
    "LU",
    "MT",
    "NL",
    "PL",
    "PT",
    "RO",
    "SK",
    "SI",
    "ES",
    "SE",
]
EEA = sorted(EU + ["IS", "LI", "NO"])
GROUPS = [("EU", "European Union", sorted(EU)), ("EEA", "European Economic Area", EEA)]

POSTGRES_UP = """
CREATE OR REPLACE FUNCTION sovereignty_decisionrecord_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'decision records are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER sovereignty_decisionrecord_no_update_delete
    BEFORE UPDATE OR DELETE ON sovereignty_decisionrecord
    FOR EACH ROW EXECUTE FUNCTION sovereignty_decisionrecord_append_only();
"""
SQLITE_UP = [
    """CREATE TRIGGER sovereignty_decisionrecord_no_update BEFORE UPDATE ON sovereignty_decisionrecord
       BEGIN SELECT RAISE(ABORT, 'decision records are append-only: UPDATE refused'); END;""",
    """CREATE TRIGGER sovereignty_decisionrecord_no_delete BEFORE DELETE ON sovereignty_decisionrecord
       BEGIN SELECT RAISE(ABORT, 'decision records are append-only: DELETE refused'); END;""",
]


def seed_groups(apps, schema_editor):
    Group = apps.get_model("sovereignty", "JurisdictionGroup")
    for code, name, countries in GROUPS:
        Group.objects.update_or_create(
            tenant=None, code=code, defaults={"name": name, "countries": countries}
        )


def install_guard(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_UP, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_UP:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("sovereignty", "0001_initial")]
    operations = [
        migrations.RunPython(seed_groups, migrations.RunPython.noop),
        migrations.RunPython(install_guard, migrations.RunPython.noop),
    ]
