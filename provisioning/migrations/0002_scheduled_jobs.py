"""The scheduled jobs, stored in django-celery-beat's tables: editable in admin afterwards."""

from django.db import migrations

JOBS = [
    ("reconciler", "provisioning.tasks.reconcile", 10),
    ("health sweep", "provisioning.tasks.health_sweep", 60),
    ("firmware compliance scan", "provisioning.tasks.firmware_compliance_scan", 3600),
    ("stale-agent detection", "provisioning.tasks.detect_stale_agents", 60),
]


def install(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, seconds in JOBS:
        every, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
        PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "interval": every, "enabled": True}
        )


def uninstall(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, _, _ in JOBS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("provisioning", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(install, uninstall)]
