# Reserved for one helper's change; empty until it writes its operations.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tenants", "0005_audit_cause")]

    operations: list = []
