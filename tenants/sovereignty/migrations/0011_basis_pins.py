# Issue 14 review (R1). Written by hand: only this helper's operations go here.
"""A legal basis pins its destination's countries (and the group version) from its owner's
groups when it is recorded; existing bases are pinned here to the groups as they are now. A
basis whose destination is no longer known pins nothing, so it permits nothing (fail closed)."""

from django.db import migrations, models


def pin_existing(apps, schema_editor):
    from django_countries import countries as iso

    TransferBasis = apps.get_model("sovereignty", "TransferBasis")
    JurisdictionGroup = apps.get_model("sovereignty", "JurisdictionGroup")
    for basis in TransferBasis.objects.all():
        code = basis.destination
        if len(code) == 2 and code in iso:
            basis.countries, basis.group_version = [code], None
        else:
            group = (
                JurisdictionGroup.objects.filter(code=code, tenant_id=basis.tenant_id).first()
                or JurisdictionGroup.objects.filter(code=code, tenant__isnull=True).first()
            )
            basis.countries = sorted(group.countries) if group else []
            basis.group_version = group.version if group else None
        basis.save(update_fields=["countries", "group_version"])


class Migration(migrations.Migration):
    dependencies = [
        ("sovereignty", "0010_decision_revision"),
    ]

    operations = [
        migrations.AddField(
            model_name="transferbasis",
            name="countries",
            field=models.JSONField(
                blank=True,
                default=list,
                editable=False,
                help_text="The destination's countries, resolved from the basis owner's groups "
                "when the basis was recorded: what transfers are checked against.",
            ),
        ),
        migrations.AddField(
            model_name="transferbasis",
            name="group_version",
            field=models.PositiveIntegerField(
                blank=True,
                editable=False,
                help_text="The version of the destination group that was pinned (none for a "
                "country).",
                null=True,
            ),
        ),
        migrations.RunPython(pin_existing, migrations.RunPython.noop),
    ]
