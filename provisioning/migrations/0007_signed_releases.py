# Issue 14 (signed artifacts). Written by hand: only this helper's operations go here.
# The self-attested ``signed`` boolean goes; a release is signed only by a digest and an Ed25519
# signature that a trust root's key verifies. Existing rows get none: they are unsigned (a
# provenance rule requiring signatures refuses them until they are signed).

from typing import Any

from django.db import migrations, models


def _unsigned_on_reverse(apps: Any, schema_editor: Any) -> None:
    """Rolling back must fail closed: the re-added ``signed`` column defaults to True, so every
    row is set to False (nothing was self-attested signed after this migration)."""
    apps.get_model("provisioning", "FirmwareRelease").objects.update(signed=False)


class Migration(migrations.Migration):
    dependencies = [
        ("provisioning", "0006_firmware_bundle_components"),
        ("sovereignty", "0008_trust_roots"),
    ]

    operations = [
        # Reversed last: after ``signed`` is re-added, every row becomes unsigned.
        migrations.RunPython(migrations.RunPython.noop, _unsigned_on_reverse),
        migrations.RemoveField(model_name="firmwarerelease", name="signed"),
        migrations.AddField(
            model_name="firmwarerelease",
            name="sha256",
            field=models.CharField(
                blank=True, help_text="SHA-256 of the image, lower-case hex.", max_length=64
            ),
        ),
        migrations.AddField(
            model_name="firmwarerelease",
            name="signature",
            field=models.CharField(
                blank=True, help_text="Detached Ed25519 signature, base64.", max_length=100
            ),
        ),
        migrations.AddField(
            model_name="firmwarerelease",
            name="key_id",
            field=models.CharField(
                blank=True,
                help_text="The signing key's id (a trust root's key_id).",
                max_length=16,
            ),
        ),
    ]
