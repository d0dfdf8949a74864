"""The lockbox's beat job: unanswered requests expire and lapsed grants end on schedule (a read
already reports both lazily; this writes them and tells the tenant). Registered by Celery's
autodiscovery under a stable name that the beat row in migration ``0007_lockbox`` sends by."""

from __future__ import annotations

from celery import shared_task

from tenants.access import SYSTEM
from tenants.choices import AuditSource
from tenants.services.changes import ChangeContext

EXPIRE_TASK = "tenants.sovereignty.expire_access_requests"


@shared_task(name=EXPIRE_TASK, acks_late=True, ignore_result=True)
def expire_access_requests() -> int:
    from tenants.sovereignty.services.access import expire_due

    return expire_due(ChangeContext(actor=SYSTEM, source=AuditSource.SYSTEM))


FACT_CHANGES_TASK = "tenants.sovereignty.apply_fact_changes"


@shared_task(name=FACT_CHANGES_TASK, acks_late=True, ignore_result=True)
def apply_fact_changes() -> int:
    """Provider fact changes whose notice has run out take effect (beat row: migration
    ``0009_key_custody_and_facts``)."""
    from tenants.sovereignty.services.facts import apply_due

    return len(apply_due(ctx=ChangeContext(actor=SYSTEM, source=AuditSource.SYSTEM)))


REPEATS_TASK = "tenants.sovereignty.close_decision_repeats"


@shared_task(name=REPEATS_TASK, acks_late=True, ignore_result=True)
def close_decision_repeats() -> int:
    """Tallies of repeated decisions whose period has ended are summarised into the chain
    (beat row: migration ``0012_decision_repeats``)."""
    from tenants.sovereignty.services.decisions import close_repeats

    return close_repeats()
