# Issue 14 (tamper-evident logs). Written by hand: only this helper's operations go here.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0003_audit_source_console"),
    ]

    operations: list = []
