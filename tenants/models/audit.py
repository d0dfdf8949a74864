"""The audit log: append-only at every layer.

The ORM refuses updates and deletes (model and queryset); the admin and API offer none; and a
database trigger (migration 0002) refuses UPDATE and DELETE even from raw SQL. Actor and tenant
are stored as plain values, not foreign keys, so deleting a person or tenant can never cascade
into (or be blocked by) the history.
"""

from django.db import models
from django.utils import timezone

from tenants.choices import AuditAction, AuditSource
from tenants.errors import Denied


class AppendOnlyError(Denied):
    """Raised on any attempt to change or remove an audit event (403: nobody may)."""

    default_code = "append_only"


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model._meta.verbose_name_plural} cannot be updated")

    def delete(self):
        raise AppendOnlyError(f"{self.model._meta.verbose_name_plural} cannot be deleted")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AppendOnlyError(f"{self.model._meta.verbose_name_plural} cannot be updated")


class AppendOnlyModel(models.Model):
    """Rows are written once. (A database trigger per table guards raw SQL as well.)"""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(f"{self._meta.verbose_name_plural} cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{self._meta.verbose_name_plural} cannot be deleted")


class AuditEvent(AppendOnlyModel):
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    actor_username = models.CharField(max_length=150, blank=True)
    source = models.CharField(max_length=16, choices=AuditSource.choices)
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    object_type = models.CharField(max_length=100, db_index=True)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    tenant_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True, db_index=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")]

    def __str__(self) -> str:
        when = f"{self.occurred_at:%Y-%m-%d %H:%M:%S}"
        return f"{when} {self.actor_username} {self.action} {self.object_repr}"

    @property
    def changed_fields(self) -> list[str]:
        before, after = self.before or {}, self.after or {}
        return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
