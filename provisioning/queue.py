"""Hints to the workers: Celery messages sent by stable task name after the commit.

A hint only says "look again"; the database is the truth and the reconciler re-sends whatever
is due, so a lost hint costs time, never correctness. Messages go by name through the Celery
app, so this module (and everything that queues work) never imports ``provisioning.tasks``:
only Celery's autodiscovery does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog
from django.db import transaction

from factory.celery import app

logger = structlog.get_logger(__name__)

#: Task names (``provisioning.tasks`` registers them; beat rows and tests use them too).
RUN_STEP = "provisioning.run_step"
RUN_STEPS = "provisioning.run_steps"
ADVANCE_WORKFLOW = "provisioning.advance_workflow"

#: Steps per message, claim and transaction (see ``queue_steps``).
STEP_BATCH = 25


def hint(task_name: str, *args: Any) -> None:
    """Send ``task_name(*args)`` after the commit. A lost hint (broker down) is logged, never
    raised: the change is committed and the reconciler finds the due work anyway."""

    def send() -> None:
        try:
            app.send_task(task_name, args=list(args), ignore_result=True)
        except Exception as exc:  # the broker is a hint channel, not the truth
            logger.warning(
                "hint lost; the reconciler will pick it up",
                task=task_name,
                args=args,
                error=str(exc),
            )

    transaction.on_commit(send)


def queue_step(step_id: int) -> None:
    """Hint one step, alone in its message (and so in its claim and transaction)."""
    hint(RUN_STEP, step_id)


def queue_steps(step_ids: Iterable[int]) -> None:
    """Hint due steps in chunks of ``STEP_BATCH``: a chunk shares one message, one claim and
    one transaction, and several chunks keep every worker busy."""
    ids = list(step_ids)
    for i in range(0, len(ids), STEP_BATCH):
        chunk = ids[i : i + STEP_BATCH]
        if len(chunk) == 1:
            hint(RUN_STEP, chunk[0])
        else:
            hint(RUN_STEPS, chunk)


def queue_advance(workflow_id: int) -> None:
    """Hint the workflow's advance (rollout policy) after the commit."""
    hint(ADVANCE_WORKFLOW, workflow_id)
