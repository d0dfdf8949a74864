# Issue 14 (tamper-evident logs). Written by hand: only this helper's operations go here.
"""The access-transparency log hash-chained per tenant, like the audit log (tenants 0004): chain
columns, the existing rows chained in (occurred_at, id) order, one row per (chain, seq)."""

from django.db import migrations, models

from tenants.append_only import chain_existing


class Migration(migrations.Migration):
    dependencies = [
        ("sovereignty", "0003_transferbasis"),
        ("tenants", "0004_audit_chain"),
    ]

    operations = [
        migrations.AddField(
            model_name="decisionrecord",
            name="chain_seq",
            field=models.BigIntegerField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="decisionrecord",
            name="prev_hash",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        migrations.AddField(
            model_name="decisionrecord",
            name="record_hash",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        chain_existing("sovereignty", "DecisionRecord", "decision"),
        migrations.AlterField(
            model_name="decisionrecord",
            name="chain_seq",
            field=models.BigIntegerField(editable=False),
        ),
        migrations.AlterField(
            model_name="decisionrecord",
            name="prev_hash",
            field=models.CharField(editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="decisionrecord",
            name="record_hash",
            field=models.CharField(editable=False, max_length=64),
        ),
        migrations.AddConstraint(
            model_name="decisionrecord",
            constraint=models.UniqueConstraint(
                fields=("tenant_id", "chain_seq"), name="decision_chain_seq", nulls_distinct=False
            ),
        ),
    ]
