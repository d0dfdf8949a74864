"""Webhook delivery mechanics: the lease's owner, failures counted per delivery, the attempt cap
counted from the last redelivery, when the secret was last rotated; and the webhook sweep as a
django-celery-beat row (editable in admin afterwards), by its stable task name; and the
``webhook.*`` kinds that record each change of a subscription in the tenant's log."""

from django.db import migrations, models

SWEEP = ("webhook sweep", "events.sweep_webhooks", 10)


def schedule_sweep(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    name, task, seconds = SWEEP
    every, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=name, defaults={"task": task, "interval": every, "enabled": True}
    )


def unschedule_sweep(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=SWEEP[0]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0002_sequence_at_commit"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookdelivery",
            name="has_failed",
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.AddField(
            model_name="webhookdelivery",
            name="lease_token",
            field=models.CharField(blank=True, editable=False, max_length=32),
        ),
        migrations.AddField(
            model_name="webhookdelivery",
            name="requeued_after_attempts",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="webhooksubscription",
            name="secret_rotated_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AlterField(
            model_name="event",
            name="kind",
            field=models.CharField(
                choices=[
                    ("fault.opened", "Fault opened"),
                    ("fault.resolved", "Fault resolved"),
                    ("workflow.created", "Workflow created"),
                    ("workflow.state_changed", "Workflow state changed"),
                    ("access_request.created", "Access requested"),
                    ("access_request.decided", "Access request decided"),
                    ("maintenance_window.requested", "Maintenance window requested"),
                    ("maintenance_window.decided", "Maintenance window decided"),
                    ("webhook.disabled", "Webhook subscription disabled"),
                    ("webhook.created", "Webhook subscription created"),
                    ("webhook.updated", "Webhook subscription changed"),
                    ("webhook.deleted", "Webhook subscription deleted"),
                    ("webhook.secret_rotated", "Webhook secret rotated"),
                ],
                db_index=True,
                max_length=40,
            ),
        ),
        migrations.RunPython(schedule_sweep, unschedule_sweep),
    ]
