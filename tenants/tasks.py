"""The tenants app's Celery tasks: thin, registered by autodiscovery under stable names, which
beat's rows send by (migration tenants 0004): nothing imports this module."""

from __future__ import annotations

from celery import shared_task

from tenants.evidence import services

CHECKPOINT_TASK = "tenants.ledger_checkpoints"


@shared_task(name=CHECKPOINT_TASK, acks_late=True, ignore_result=True)
def ledger_checkpoints() -> dict[str, int]:
    """Sign the head of every chain that moved since its last checkpoint."""
    return {"checkpoints": len(services.checkpoint())}
