from __future__ import annotations

import datetime as dt

from django.db import models
from django.db.models import Q
from django.utils import timezone

from factory.telemetry.choices import FaultAction, FaultRule, FaultSeverity


def silenced_at(now: dt.datetime | None = None) -> Q:
    """The one meaning of "silenced": a silence whose end is still ahead (one gone by counts
    again). A condition, for filters that build their own."""
    return Q(silenced_until__gt=now or timezone.now())


class FaultQuerySet(models.QuerySet["Fault"]):
    """Faults by whether a person silenced them, judged at ``now`` (default: the clock)."""

    def silenced(self, now: dt.datetime | None = None) -> FaultQuerySet:
        return self.filter(silenced_at(now))

    def loud(self, now: dt.datetime | None = None) -> FaultQuerySet:
        """Not silenced now: never silenced, or the silence is over."""
        moment = now or timezone.now()
        return self.filter(Q(silenced_until__isnull=True) | Q(silenced_until__lte=moment))


class Fault(models.Model):
    """Something wrong with a chip, a server, a feed or a site. One open fault per subject and
    rule (``key``): a rule that keeps firing does not pile up faults."""

    site = models.ForeignKey("inventory.Site", on_delete=models.CASCADE, related_name="faults")
    ultraserver = models.ForeignKey(
        "inventory.UltraServer",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="faults",
    )
    chip_index = models.PositiveSmallIntegerField(null=True, blank=True)
    rule = models.CharField(max_length=24, choices=FaultRule.choices)
    key = models.CharField(max_length=160, help_text="Subject and rule; unique while open.")
    detail = models.CharField(max_length=500)
    opened_at = models.DateTimeField(auto_now_add=True)
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_reason = models.CharField(max_length=200, blank=True)
    cleared_by = models.CharField(
        max_length=150, blank=True, help_text="The person who resolved it; blank for the rules."
    )
    severity = models.CharField(
        max_length=10, choices=FaultSeverity.choices, default=FaultSeverity.CRITICAL
    )
    action = models.CharField(
        max_length=24, choices=FaultAction.choices, default=FaultAction.RECORDED
    )
    action_detail = models.CharField(
        max_length=500, blank=True, help_text="Why the action is what it is (a refusal's words)."
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)
    acknowledge_note = models.CharField(max_length=500, blank=True)
    silenced_until = models.DateTimeField(null=True, blank=True)
    silenced_by = models.CharField(max_length=150, blank=True)
    silence_note = models.CharField(max_length=500, blank=True)

    objects = FaultQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["site", "key"],
                condition=Q(cleared_at__isnull=True),
                name="fault_one_open_per_key",
            )
        ]
        indexes = [
            models.Index(fields=["ultraserver", "cleared_at"], name="fault_server_open"),
            models.Index(
                fields=["site", "severity"],
                condition=Q(cleared_at__isnull=True),
                name="fault_open_by_severity",
            ),
        ]

    def __str__(self):
        return f"{self.get_rule_display()}: {self.detail}"

    def is_silenced(self, now: dt.datetime | None = None) -> bool:
        """Silenced at ``now``, as ``FaultQuerySet.silenced`` decides it."""
        return self.silenced_until is not None and self.silenced_until > (now or timezone.now())

    @property
    def silenced(self) -> bool:
        """Silenced now."""
        return self.is_silenced()

    @property
    def drains(self) -> bool:
        """Its rule's policy took (or is taking) the server out of service: not merely
        recorded."""
        return bool(self.ultraserver_id) and self.action != FaultAction.RECORDED

    @property
    def owning_tenant_id(self):
        return self.site.tenant_id
