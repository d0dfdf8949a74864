"""The event log.

``sequence`` is what readers page and resume by (the SSE ``id``, ``?after=``). It is assigned
at COMMIT, not at INSERT: on PostgreSQL a deferred constraint trigger takes a transaction-level
advisory lock and draws the next number (migration 0002). Numbers are therefore handed out in
commit order and a reader that has seen sequence N can never later find a committed N-1: resume
by ``sequence > N`` has no gaps. (An autoincrement id has gaps of that kind: a transaction that
started first can commit last.) Until its transaction commits a row has no sequence and no
reader sees it. On SQLite, the embedded default, writers are serialised anyway, so an insert
trigger copies the id.

Tests that write events inside a never-committed test transaction run
``SET CONSTRAINTS ALL IMMEDIATE`` to fire the trigger (``tests.support.events``).
"""

from django.db import models
from django.utils import timezone

from tenants.events.choices import EventKindChoice


class Event(models.Model):
    sequence = models.BigIntegerField(null=True, blank=True, unique=True, editable=False)
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=40, choices=EventKindChoice.choices, db_index=True)
    #: Whose event it is: the tenant the API scopes it to (null: the provider's alone).
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    subject_type = models.CharField(max_length=50, db_index=True)
    subject_id = models.CharField(max_length=64)
    subject_name = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["sequence"]
        indexes = [models.Index(fields=["tenant", "sequence"], name="event_tenant_sequence")]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject_type}:{self.subject_id}"
