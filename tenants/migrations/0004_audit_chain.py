# Issue 14 (tamper-evident logs). Written by hand: only this helper's operations go here.
"""The audit log hash-chained per tenant: chain columns, the existing rows chained in
(occurred_at, id) order, one row per (chain, seq); the ledger's signing keys and signed
checkpoints (both append-only); and the checkpoint job as a django-celery-beat row."""

from django.db import migrations, models
from django.utils import timezone

from tenants.append_only import chain_existing, guard

CHECKPOINTS = ("ledger checkpoints", "tenants.ledger_checkpoints", 300)

# The chain's lock, head and new ids in one round trip (tenants.models.audit._head). VOLATILE:
# each query inside takes a fresh snapshot, so the head read after the lock sees the previous
# holder's committed row.
LINK_FUNCTION = """
CREATE OR REPLACE FUNCTION ledger_link(
    lock_class int, lock_key int, tbl regclass, tenant bigint, n int,
    OUT head_seq bigint, OUT head_hash text, OUT ids bigint[]
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_class, lock_key);
    IF tenant IS NULL THEN
        EXECUTE format('SELECT chain_seq, record_hash FROM %s WHERE tenant_id IS NULL '
                       'ORDER BY chain_seq DESC LIMIT 1', tbl) INTO head_seq, head_hash;
    ELSE
        EXECUTE format('SELECT chain_seq, record_hash FROM %s WHERE tenant_id = $1 '
                       'ORDER BY chain_seq DESC LIMIT 1', tbl) INTO head_seq, head_hash
            USING tenant;
    END IF;
    SELECT array_agg(nextval(pg_get_serial_sequence(tbl::text, 'id')))
        INTO ids FROM generate_series(1, n);
END $$;
"""


def create_link_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(LINK_FUNCTION, params=None)


def drop_link_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "DROP FUNCTION IF EXISTS ledger_link(int, int, regclass, bigint, int)"
        )


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    name, task, seconds = CHECKPOINTS
    every, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=name, defaults={"task": task, "interval": every, "enabled": True}
    )


def unschedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=CHECKPOINTS[0]).delete()


def chain_field(name: str, field: models.Field) -> migrations.AddField:
    return migrations.AddField(model_name="auditevent", name=name, field=field)


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0003_audit_source_console"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        chain_field("chain_seq", models.BigIntegerField(editable=False, null=True)),
        chain_field("prev_hash", models.CharField(editable=False, max_length=64, null=True)),
        chain_field("record_hash", models.CharField(editable=False, max_length=64, null=True)),
        chain_existing("tenants", "AuditEvent", "audit"),
        migrations.AlterField(
            model_name="auditevent",
            name="chain_seq",
            field=models.BigIntegerField(editable=False),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="record_hash",
            field=models.CharField(editable=False, max_length=64),
        ),
        migrations.AddConstraint(
            model_name="auditevent",
            constraint=models.UniqueConstraint(
                fields=("tenant_id", "chain_seq"), name="audit_chain_seq", nulls_distinct=False
            ),
        ),
        migrations.CreateModel(
            name="LedgerKey",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("key_id", models.CharField(max_length=64, unique=True)),
                ("public_key_pem", models.TextField()),
                ("created_at", models.DateTimeField(default=timezone.now)),
            ],
            options={"ordering": ["created_at", "id"]},
        ),
        migrations.CreateModel(
            name="Checkpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("log", models.CharField(max_length=16)),
                ("tenant_id", models.BigIntegerField(blank=True, null=True)),
                ("seq", models.BigIntegerField()),
                ("head_hash", models.CharField(max_length=64)),
                ("created_at", models.DateTimeField(default=timezone.now)),
                ("key_id", models.CharField(max_length=64)),
                (
                    "signature",
                    models.TextField(help_text="base64 Ed25519 over the canonical payload"),
                ),
            ],
            options={
                "ordering": ["log", "tenant_id", "seq", "id"],
                "indexes": [
                    models.Index(fields=["log", "tenant_id", "seq"], name="checkpoint_chain_idx")
                ],
            },
        ),
        guard("tenants_ledgerkey", "ledger keys"),
        guard("tenants_checkpoint", "checkpoints"),
        migrations.RunPython(create_link_function, drop_link_function),
        migrations.RunPython(schedule, unschedule),
    ]
