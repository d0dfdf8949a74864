"""Scheduled jobs name their tasks by stable name ("provisioning.reconcile"), not by the module
path the code happened to live in ("provisioning.tasks.reconcile"). Rewrites the beat rows both
ways; 0002 and 0004 still install the old paths, this migration moves them on."""

from django.db import migrations
from django.utils import timezone

RENAMES = {
    f"provisioning.tasks.{name}": f"provisioning.{name}"
    for name in (
        "run_step",
        "run_steps",
        "advance_workflow",
        "reconcile",
        "health_sweep",
        "firmware_compliance_scan",
        "detect_stale_agents",
        "telemetry_rollup",
        "telemetry_retention",
        "noop",
    )
}


def rename(apps, renames: dict[str, str]) -> int:
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    changed = 0
    for old, new in renames.items():
        changed += PeriodicTask.objects.filter(task=old).update(task=new)
    if changed:  # a running beat reloads its schedule when this stamp moves
        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})
    return changed


def forwards(apps, schema_editor):
    rename(apps, RENAMES)


def backwards(apps, schema_editor):
    rename(apps, {new: old for old, new in RENAMES.items()})


class Migration(migrations.Migration):
    dependencies = [
        ("provisioning", "0004_telemetry_jobs"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
