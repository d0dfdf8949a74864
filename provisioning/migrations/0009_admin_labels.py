# Admin labels a person would write (issue 17).
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("provisioning", "0008_workflow_cause")]

    operations = [
        migrations.AlterModelOptions(
            name="step",
            options={
                "ordering": ["workflow_id", "target_id", "seq"],
                "verbose_name": "workflow step",
            },
        ),
    ]
