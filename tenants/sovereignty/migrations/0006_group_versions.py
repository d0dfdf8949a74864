# Issue 14 (customer boundary). Written by hand: only this helper's operations go here.
"""Immutable group versions and rules that pin them.

Every existing group becomes version 1 of itself; every active rule pins the version 1 of the
groups it names (what it enforced until now), and nothing it decides changes.
"""

import django.db.models.deletion
from django.db import migrations, models

PLACE_KEYS = {
    "residency": ("allowed",),
    "replica_residency": ("allowed",),
    "transfer": ("allowed",),
    "personnel": ("nationalities", "residencies"),
    "telemetry_egress": ("destinations",),
}

POSTGRES_UP = """
CREATE OR REPLACE FUNCTION sovereignty_groupversion_append_only() RETURNS trigger AS $$
BEGIN
    IF (NEW.id, NEW.group_id, NEW.version, NEW.name, NEW.countries)
       IS NOT DISTINCT FROM (OLD.id, OLD.group_id, OLD.version, OLD.name, OLD.countries) THEN
        -- the same definition written back (a test's serialized rollback, whose timestamps
        -- carry milliseconds only): nothing changes, not even created_at
        NEW.created_at := OLD.created_at;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'jurisdiction group versions are immutable: UPDATE refused'
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER sovereignty_groupversion_no_update
    BEFORE UPDATE ON sovereignty_jurisdictiongroupversion
    FOR EACH ROW EXECUTE FUNCTION sovereignty_groupversion_append_only();
"""
POSTGRES_DOWN = """
DROP TRIGGER IF EXISTS sovereignty_groupversion_no_update ON sovereignty_jurisdictiongroupversion;
DROP FUNCTION IF EXISTS sovereignty_groupversion_append_only();
"""


def install_guard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_UP, params=None)


def remove_guard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_DOWN, params=None)


def version_one(apps, schema_editor):
    Group = apps.get_model("sovereignty", "JurisdictionGroup")
    Version = apps.get_model("sovereignty", "JurisdictionGroupVersion")
    Rule = apps.get_model("sovereignty", "SovereigntyRule")
    for group in Group.objects.all():
        group.version = 1
        group.save(update_fields=["version"])
        Version.objects.create(
            group=group, version=1, name=group.name, countries=sorted(group.countries)
        )
    for rule in Rule.objects.filter(status="active"):
        named = {
            value
            for key in PLACE_KEYS.get(rule.kind, ())
            for value in (rule.params or {}).get(key) or []
            if isinstance(value, str)
        }
        pins = {}
        for code in sorted(named):
            group = (
                Group.objects.filter(tenant_id=rule.tenant_id, code=code).first()
                or Group.objects.filter(tenant__isnull=True, code=code).first()
            )
            if group is not None:
                pins[code] = {
                    "group": group.pk,
                    "version": 1,
                    "builtin": group.tenant_id is None,
                    "countries": sorted(group.countries),
                }
        rule.pinned_groups = pins
        rule.save(update_fields=["pinned_groups"])


def forget_versions(apps, schema_editor):
    # Reversed, the columns and the version table go away with their operations.
    pass


class Migration(migrations.Migration):
    dependencies = [
        ("sovereignty", "0005_decision_owner"),
    ]

    operations = [
        migrations.AddField(
            model_name="jurisdictiongroup",
            name="version",
            field=models.PositiveIntegerField(
                default=1, help_text="The current definition's version."
            ),
        ),
        migrations.CreateModel(
            name="JurisdictionGroupVersion",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("version", models.PositiveIntegerField()),
                ("name", models.CharField(max_length=200)),
                ("countries", models.JSONField(help_text="ISO 3166-1 alpha-2 codes")),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "group",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="versions",
                        to="sovereignty.jurisdictiongroup",
                    ),
                ),
            ],
            options={"ordering": ["group_id", "version"]},
        ),
        migrations.AddConstraint(
            model_name="jurisdictiongroupversion",
            constraint=models.UniqueConstraint(
                fields=("group", "version"), name="group_version_unique"
            ),
        ),
        migrations.AddField(
            model_name="sovereigntyrule",
            name="activation_what_if",
            field=models.JSONField(
                blank=True,
                null=True,
                help_text="What the rule would deny when it was activated (the what-if shown "
                "then).",
            ),
        ),
        migrations.AddField(
            model_name="sovereigntyrule",
            name="pinned_groups",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="The group versions this rule names, pinned when it was activated: "
                '{code: {"group": id, "version": n, "countries": [...]}}. Decisions use these.',
            ),
        ),
        migrations.RunPython(version_one, forget_versions),
        migrations.RunPython(install_guard, remove_guard),
    ]
