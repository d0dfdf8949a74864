"""The tally of identical decisions: repeats counted beside the chain, not chained one by one."""

import django.db.models.deletion
from django.db import migrations, models

#: (beat row name, task, every seconds): tallies whose period ended reach the chain.
REPEATS_JOB = (
    "sovereignty: close repeated-decision tallies",
    "tenants.sovereignty.close_decision_repeats",
    600,
)


def install_job(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    name, task, seconds = REPEATS_JOB
    every, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=name, defaults={"task": task, "interval": every, "enabled": True}
    )


def uninstall_job(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=REPEATS_JOB[0]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("sovereignty", "0011_basis_pins"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.CreateModel(
            name="DecisionRepeat",
            fields=[
                (
                    "record",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="repeats",
                        serialize=False,
                        to="sovereignty.decisionrecord",
                    ),
                ),
                ("tenant_id", models.BigIntegerField()),
                ("key", models.CharField(max_length=64)),
                ("outcome", models.CharField(max_length=64)),
                (
                    "count",
                    models.PositiveIntegerField(
                        default=1, help_text="Occurrences, the first included."
                    ),
                ),
                ("first_at", models.DateTimeField()),
                ("last_at", models.DateTimeField()),
                ("closed", models.BooleanField(default=False)),
                (
                    "summary",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="summarises",
                        to="sovereignty.decisionrecord",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["closed", "first_at"], name="decision_repeat_open")
                ],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("closed", False)),
                        fields=("tenant_id", "key"),
                        name="decision_repeat_one_open_per_key",
                    )
                ],
            },
        ),
        migrations.RunPython(install_job, uninstall_job),
    ]
