# Reserved for one helper's change; empty until it writes its operations.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("inventory", "0006_network_fabric")]

    operations: list = []
