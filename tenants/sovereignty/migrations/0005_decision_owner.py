# Issue 14 (enforcement). Written by hand: only this helper's operations go here.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sovereignty", "0004_decision_chain"),
    ]

    operations: list = [
        migrations.AddField(
            model_name="decisionrecord",
            name="site_owner_id",
            field=models.BigIntegerField(
                blank=True,
                db_index=True,
                help_text="The tenant whose premises the site is: it sees the record, redacted.",
                null=True,
            ),
        ),
    ]
