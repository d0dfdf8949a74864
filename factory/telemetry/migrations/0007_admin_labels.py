# Reserved for one helper's change; empty until it writes its operations.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("telemetry", "0006_fault_attention")]

    operations: list = []
