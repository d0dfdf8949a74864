# Issue 14 (customer boundary). Written by hand: only this helper's operations go here.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("sovereignty", "0005_decision_owner"),
    ]

    operations: list = []
