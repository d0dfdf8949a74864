# Issue 14 (signed artifacts). Written by hand: only this helper's operations go here.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("provisioning", "0006_firmware_bundle_components"),
        ("sovereignty", "0008_trust_roots"),
    ]

    operations: list = []
