# Issue 14 (key custody and provider facts). Written by hand: only this helper's operations go here.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("sovereignty", "0008_trust_roots"),
    ]

    operations: list = []
