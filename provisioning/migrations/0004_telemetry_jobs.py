"""Telemetry's scheduled jobs: roll-ups every minute, retention every hour."""

from django.db import migrations

from provisioning.beat import schedule

JOBS = [
    ("telemetry roll-up", "provisioning.tasks.telemetry_rollup", 60),
    ("telemetry retention", "provisioning.tasks.telemetry_retention", 3600),
]


class Migration(migrations.Migration):
    dependencies = [
        ("provisioning", "0003_append_only_guards"),
        ("telemetry", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(*schedule(JOBS))]
