# Issue 14 (enforcement). Written by hand: only this helper's operations go here.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("sovereignty", "0004_decision_chain"),
    ]

    operations: list = []
