# Issue 14 (lockbox). Written by hand: only this helper's operations go here.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("sovereignty", "0006_group_versions"),
    ]

    operations: list = []
