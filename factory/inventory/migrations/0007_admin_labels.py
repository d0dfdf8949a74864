# Admin labels a person would write (issue 17).
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("inventory", "0006_network_fabric")]

    operations = [
        migrations.AlterModelOptions(
            name="ultraserver",
            options={
                "ordering": ["serial"],
                "verbose_name": "UltraServer",
                "verbose_name_plural": "UltraServers",
            },
        ),
    ]
