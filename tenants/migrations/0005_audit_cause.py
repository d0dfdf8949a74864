# Attribution of audit events (issue 17): the causing person, the cause and a reason. New
# columns over chained rows: empty in every existing row, and left out of the digest while empty
# (``verify_pack.ADDED_LATER``), so nothing is re-chained and old records verify as they were.
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tenants", "0004_audit_chain")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="on_behalf_of",
            field=models.CharField(
                blank=True,
                default="",
                help_text="The person who started or approved the cause.",
                max_length=150,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="cause_type",
            field=models.CharField(
                blank=True,
                choices=[
                    ("workflow", "Workflow"),
                    ("job", "Scheduled job"),
                    ("rule", "Health rule"),
                    ("agent", "Site agent"),
                ],
                default="",
                max_length=16,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="cause_id",
            field=models.CharField(blank=True, default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="reason",
            field=models.CharField(
                blank=True, default="", help_text="Why, as a person gave it.", max_length=500
            ),
            preserve_default=False,
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["cause_type", "cause_id"], name="audit_cause_idx"),
        ),
    ]
