# Issue 14 (fast decisions). Written by hand: only this helper's operations go here.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("sovereignty", "0009_key_custody_and_facts"),
    ]

    operations: list = []
