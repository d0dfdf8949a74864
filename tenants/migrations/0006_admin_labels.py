# Admin labels a person would write (issue 17).
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tenants", "0005_audit_cause")]

    operations = [
        migrations.AlterModelOptions(
            name="apitoken",
            options={
                "ordering": ["-created_at"],
                "verbose_name": "API token",
                "verbose_name_plural": "API tokens",
            },
        ),
    ]
