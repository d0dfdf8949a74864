# Attribution (issue 17): who started a workflow and under which request, so the changes the
# engine makes for it are recorded on that person's behalf. Existing workflows keep blanks.
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("provisioning", "0007_signed_releases")]

    operations = [
        migrations.AddField(
            model_name="workflow",
            name="started_by",
            field=models.CharField(
                blank=True,
                default="",
                help_text="Who started it (its creator, or who started it later).",
                max_length=150,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="workflow",
            name="request_id",
            field=models.CharField(
                blank=True,
                default="",
                help_text="The request that created (or started) it.",
                max_length=64,
            ),
            preserve_default=False,
        ),
    ]
