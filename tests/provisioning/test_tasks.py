"""Celery tasks go by stable names: beat's rows and every hint name a registered task, and
nothing imports ``provisioning.tasks`` (hints are sent by name)."""

import ast
import importlib
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django_celery_beat.models import PeriodicTask

from factory.celery import app
from provisioning import queue

pytestmark = pytest.mark.django_db

SCHEDULED = {
    "reconciler": "provisioning.reconcile",
    "health sweep": "provisioning.health_sweep",
    "firmware compliance scan": "provisioning.firmware_compliance_scan",
    "stale-agent detection": "provisioning.detect_stale_agents",
    "telemetry roll-up": "provisioning.telemetry_rollup",
    "telemetry retention": "provisioning.telemetry_retention",
    "webhook sweep": "events.sweep_webhooks",  # tenants/events/migrations/0003
    "ledger checkpoints": "tenants.ledger_checkpoints",  # tenants/migrations/0004
    "lockbox: expire access requests": "tenants.sovereignty.expire_access_requests",  # 0007
    "sovereignty fact changes": "tenants.sovereignty.apply_fact_changes",  # sovereignty 0009
    "advance capacity reservations": "placement.advance_reservations",  # placement 0002
    "sovereignty: close repeated-decision tallies": "tenants.sovereignty.close_decision_repeats",
}


def registered_tasks() -> set[str]:
    """The task names a worker knows: what Celery's autodiscovery registers."""
    app.loader.import_default_modules()
    return set(app.tasks)


def test_every_scheduled_job_names_a_registered_task_by_its_stable_name():
    tasks = dict(PeriodicTask.objects.values_list("name", "task"))
    assert tasks == SCHEDULED
    assert set(tasks.values()) <= registered_tasks()


def test_every_hint_names_a_registered_task():
    hinted = {queue.RUN_STEP, queue.RUN_STEPS, queue.ADVANCE_WORKFLOW}
    assert hinted | {"provisioning.noop"} <= registered_tasks()


def test_the_task_name_migration_rewrites_beat_rows_both_ways():
    migration = importlib.import_module("provisioning.migrations.0005_stable_task_names")
    migration.backwards(django_apps, None)
    assert dict(PeriodicTask.objects.values_list("name", "task")) == {
        name: task.replace("provisioning.", "provisioning.tasks.")
        for name, task in SCHEDULED.items()
    }
    migration.forwards(django_apps, None)
    assert dict(PeriodicTask.objects.values_list("name", "task")) == SCHEDULED


def imports_of_tasks(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name == "provisioning.tasks" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            if node.module == "provisioning.tasks":
                return True
            if node.module == "provisioning" and any(a.name == "tasks" for a in node.names):
                return True
    return False


def test_nothing_imports_the_tasks_module():
    """Only Celery's autodiscovery loads it: it is the top of the import graph."""
    roots = ("factory", "tenants", "provisioning", "bench", "tests")
    offenders = [
        str(path) for root in roots for path in Path(root).rglob("*.py") if imports_of_tasks(path)
    ]
    assert offenders == []


def test_messages_sent_under_the_old_module_path_names_still_run():
    """A message queued before the rename (or sent by the previous release mid-deploy) is not
    dropped as unregistered: the old name runs the same function as the stable one."""
    legacy_names = importlib.import_module("provisioning.tasks").LEGACY_NAMES
    migration = importlib.import_module("provisioning.migrations.0005_stable_task_names")
    assert legacy_names == migration.RENAMES  # every name the beat rows ever carried
    assert legacy_names["provisioning.tasks.run_steps"] == queue.RUN_STEPS
    assert len(legacy_names) == 10
    for legacy, stable in legacy_names.items():
        assert app.tasks[legacy].run is app.tasks[stable].run
        assert app.tasks[legacy].acks_late == app.tasks[stable].acks_late


#: The concern each scheduled job belongs to (issue 18 item 5: queues by concern).
CONCERN = {
    "events.sweep_webhooks": "WEBHOOK_QUEUE",
    "provisioning.telemetry_rollup": "TELEMETRY_QUEUE",
    "provisioning.telemetry_retention": "TELEMETRY_QUEUE",
}


def routed(task: str) -> str:
    """The queue the control plane's Celery app sends ``task`` to (its configured routes)."""
    return app.amqp.router.route({}, task)["queue"].name


def test_every_task_goes_to_its_concerns_queue_and_hints_to_the_steps_queue(settings):
    for task in SCHEDULED.values():
        queue_setting = CONCERN.get(task, "JOBS_QUEUE")
        assert routed(task) == getattr(settings, queue_setting), task
    for hint in (queue.RUN_STEP, queue.RUN_STEPS, queue.ADVANCE_WORKFLOW, "provisioning.noop"):
        assert routed(hint) == settings.CELERY_TASK_DEFAULT_QUEUE, hint
    # what a release before the stable names sends goes where the stable name goes
    assert routed("provisioning.tasks.telemetry_rollup") == settings.TELEMETRY_QUEUE
    assert routed("provisioning.tasks.reconcile") == settings.JOBS_QUEUE
    assert routed("provisioning.tasks.run_step") == settings.CELERY_TASK_DEFAULT_QUEUE
    assert len(set(settings.CELERY_TASK_QUEUES)) == 4
