"""Provenance rules that trust "any root" pin the roots in force when activated (issue 14).

Rules active before this migration are pinned to the provider's roots unrevoked now (and the
tenant's own, ``tenant:_own``), so nothing they allowed changes on upgrade; from here on a new
provider root reaches them only on re-activation."""

from django.db import migrations, models


def pin_active_rules(apps, schema_editor):
    rules = apps.get_model("sovereignty", "SovereigntyRule")
    roots = apps.get_model("sovereignty", "TrustRoot")
    for rule in rules.objects.filter(status="active", kind="artifact_provenance"):
        params = rule.params or {}
        origins = params.get("origins")
        if not params.get("require_signature") or params.get("trust_roots"):
            continue
        if not isinstance(origins, list):
            continue
        found = roots.objects.filter(
            tenant__isnull=True, origin__in=origins, revoked_at__isnull=True
        )
        # tenant:_own is core.model.OWN_ROOTS: the tenant's own roots count as they are.
        rule.pinned_roots = sorted({"tenant:_own", *(f"provider:{r.name}" for r in found)})
        rule.save(update_fields=["pinned_roots"])


class Migration(migrations.Migration):
    dependencies = [
        ("sovereignty", "0013_admin_labels"),
    ]

    operations = [
        migrations.AddField(
            model_name="sovereigntyrule",
            name="pinned_roots",
            field=models.JSONField(
                blank=True,
                db_default=models.Value([], output_field=models.JSONField()),
                default=list,
                help_text="For an artifact_provenance rule that requires a signature and names "
                "no trust_roots: the refs of the provider's roots for its origins in force when "
                "it was activated, and tenant:_own (the tenant's own roots). Only these verify for "
                "it; a provider root registered later reaches it when the tenant re-activates.",
            ),
        ),
        migrations.RunPython(pin_active_rules, migrations.RunPython.noop),
    ]
