"""Scheduled jobs as data migrations: django-celery-beat rows, editable in admin afterwards."""

from __future__ import annotations


def schedule(jobs: list[tuple[str, str, int]]):
    """``(install, uninstall)`` for ``RunPython``; ``jobs``: (name, task path, every seconds)."""

    def install(apps, schema_editor):
        IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
        PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
        for name, task, seconds in jobs:
            every, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
            PeriodicTask.objects.get_or_create(
                name=name, defaults={"task": task, "interval": every, "enabled": True}
            )

    def uninstall(apps, schema_editor):
        PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
        PeriodicTask.objects.filter(name__in=[name for name, _, _ in jobs]).delete()

    return install, uninstall
