# Issue 14 (signed artifacts). Written by hand: only this helper's operations go here.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("sovereignty", "0007_lockbox"),
    ]

    operations: list = []
