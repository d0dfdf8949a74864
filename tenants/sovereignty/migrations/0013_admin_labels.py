# Admin labels a person would write (issue 17).
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sovereignty", "0012_decision_repeats")]

    operations = [
        migrations.AlterModelOptions(
            name="transferbasis",
            options={"ordering": ["destination", "kind"], "verbose_name_plural": "transfer bases"},
        ),
    ]
