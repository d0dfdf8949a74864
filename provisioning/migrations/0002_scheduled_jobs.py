"""The scheduled jobs, stored in django-celery-beat's tables: editable in admin afterwards."""

from django.db import migrations

from provisioning.beat import schedule

JOBS = [
    ("reconciler", "provisioning.tasks.reconcile", 10),
    ("health sweep", "provisioning.tasks.health_sweep", 60),
    ("firmware compliance scan", "provisioning.tasks.firmware_compliance_scan", 3600),
    ("stale-agent detection", "provisioning.tasks.detect_stale_agents", 60),
]


class Migration(migrations.Migration):
    dependencies = [
        ("provisioning", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(*schedule(JOBS))]
