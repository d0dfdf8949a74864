# Reserved for one helper's change; empty until it writes its operations.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("provisioning", "0010_workflow_cause")]

    operations: list = []
