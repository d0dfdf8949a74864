# Issue 14 (tamper-evident logs). Written by hand: only this helper's operations go here.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("sovereignty", "0003_transferbasis"),
        ("tenants", "0004_audit_chain"),
    ]

    operations: list = []
