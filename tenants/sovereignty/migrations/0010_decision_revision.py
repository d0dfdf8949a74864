# Issue 14 (fast decisions). Written by hand: only this helper's operations go here.
"""The sovereignty revision (``tenants.sovereignty.revision``) and the triggers that bump it
whenever a table of decision facts changes. Tables another part has not created are skipped;
that part attaches its own with ``revision.attach_sql``."""

from django.db import migrations

from tenants.sovereignty import revision

#: (table, column naming the owning tenant; None: the rows concern every tenant)
FACT_TABLES = [
    ("inventory_site", "tenant_id"),
    ("sovereignty_jurisdictiongroup", "tenant_id"),  # NULL (built-in) → every tenant
    ("sovereignty_jurisdictiongroupversion", None),
    ("sovereignty_sovereigntyrule", "tenant_id"),
    ("sovereignty_protectedasset", "tenant_id"),
    ("sovereignty_transferbasis", "tenant_id"),
    ("sovereignty_externalkeystore", "tenant_id"),
    ("sovereignty_externalkeystore_sites", None),
]


def install(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # off PostgreSQL no decision facts are cached
    schema_editor.execute(revision.INSTALL_SQL)
    for table, column in FACT_TABLES:
        schema_editor.execute(revision.attach_sql(table, column))


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, _ in FACT_TABLES:
        schema_editor.execute(revision.detach_sql(table))
    schema_editor.execute(revision.UNINSTALL_SQL)


class Migration(migrations.Migration):
    dependencies = [
        ("sovereignty", "0009_key_custody_and_facts"),
        ("inventory", "0003_site_accreditations_site_air_gapped"),
    ]

    operations: list = [migrations.RunPython(install, uninstall)]
