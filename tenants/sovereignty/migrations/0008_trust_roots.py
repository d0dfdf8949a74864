# Issue 14 (signed artifacts). Written by hand: only this helper's operations go here.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sovereignty", "0007_lockbox"),
    ]

    operations = [
        migrations.CreateModel(
            name="TrustRoot",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "name",
                    models.CharField(help_text="Letters, digits, '.', '_' and '-'.", max_length=64),
                ),
                (
                    "origin",
                    models.CharField(
                        help_text="The release origin this key signs for.", max_length=200
                    ),
                ),
                (
                    "public_key",
                    models.TextField(
                        help_text="Ed25519 public key: PEM, or the raw 32 bytes in base64 "
                        "(stored as base64)."
                    ),
                ),
                (
                    "key_id",
                    models.CharField(blank=True, db_index=True, editable=False, max_length=16),
                ),
                ("description", models.CharField(blank=True, max_length=500)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("revoked_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("revoked_by", models.CharField(blank=True, editable=False, max_length=150)),
                ("revoked_reason", models.CharField(blank=True, editable=False, max_length=500)),
                (
                    "tenant",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="trust_roots",
                        to="tenants.tenant",
                    ),
                ),
            ],
            options={"ordering": ["origin", "name"]},
        ),
        migrations.AddConstraint(
            model_name="trustroot",
            constraint=models.UniqueConstraint(
                fields=("tenant", "name"), name="trust_root_name_per_tenant"
            ),
        ),
        migrations.AddConstraint(
            model_name="trustroot",
            constraint=models.UniqueConstraint(
                condition=models.Q(("tenant__isnull", True)),
                fields=("name",),
                name="trust_root_name_provider",
            ),
        ),
    ]
