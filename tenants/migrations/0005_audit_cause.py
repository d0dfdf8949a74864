# Reserved for one helper's change; empty until it writes its operations.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tenants", "0004_audit_chain")]

    operations: list = []
