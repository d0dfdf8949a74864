"""Workflows are rows, not messages: Celery only carries hints to look at a step again."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from provisioning.choices import StepState, TargetState, WorkflowKind, WorkflowState
from tenants.models.audit import AppendOnlyModel


class Workflow(models.Model):
    kind = models.CharField(max_length=16, choices=WorkflowKind.choices)
    state = models.CharField(
        max_length=16, choices=WorkflowState.choices, default=WorkflowState.RUNNING
    )
    site = models.ForeignKey("inventory.Site", on_delete=models.PROTECT, related_name="workflows")
    spec = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(max_length=128, null=True, blank=True, unique=True)
    reason = models.CharField(max_length=500, blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    # Attribution (issue 17): the changes the engine makes for this workflow are recorded on
    # behalf of the person who started it, under the request that created or started it.
    started_by = models.CharField(
        max_length=150,
        blank=True,
        help_text="Who started it (its creator, or who started it later).",
    )
    request_id = models.CharField(
        max_length=64, blank=True, help_text="The request that created (or started) it."
    )
    state_reason = models.CharField(
        max_length=1000, blank=True, help_text="Why it is paused, failed or cancelled."
    )
    current_batch = models.IntegerField(default=-1)
    batch_finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state"], name="workflow_state")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.site.tenant_id


class WorkflowTarget(models.Model):
    """One UltraServer in a workflow. ``active`` marks the hold: a partial unique index makes
    'one active workflow per UltraServer' a fact of the database, not of the code."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="targets")
    ultraserver = models.ForeignKey(
        "inventory.UltraServer", on_delete=models.PROTECT, related_name="workflow_targets"
    )
    active = models.BooleanField(default=True)
    batch = models.IntegerField(null=True, blank=True)
    state = models.CharField(
        max_length=16, choices=TargetState.choices, default=TargetState.PENDING
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=1000, blank=True)
    verified_state = models.JSONField(
        null=True, blank=True, help_text="The hardware's real state, read before giving up."
    )

    class Meta:
        ordering = ["workflow_id", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["ultraserver"],
                condition=Q(active=True),
                name="one_active_workflow_per_ultraserver",
            ),
            models.UniqueConstraint(
                fields=["workflow", "ultraserver"], name="target_once_per_workflow"
            ),
        ]
        indexes = [models.Index(fields=["workflow", "state"], name="target_wf_state")]

    def __str__(self) -> str:
        return f"{self.workflow_id}:{self.ultraserver_id}"


class Step(models.Model):
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="steps")
    target = models.ForeignKey(
        WorkflowTarget, null=True, blank=True, on_delete=models.CASCADE, related_name="steps"
    )
    seq = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=40)
    state = models.CharField(max_length=12, choices=StepState.choices, default=StepState.PENDING)
    attempt = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    external_ref = models.CharField(max_length=64, blank=True)
    input = models.JSONField(default=dict, blank=True)
    output = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=1000, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["workflow_id", "target_id", "seq"]
        verbose_name = "workflow step"
        constraints = [
            models.UniqueConstraint(fields=["target", "seq"], name="step_seq_unique_per_target")
        ]
        indexes = [
            models.Index(
                fields=["next_check_at"],
                condition=Q(state__in=["ready", "waiting"]),
                name="step_due",
            ),
            models.Index(
                fields=["lease_expires_at"], condition=Q(state="running"), name="step_leased"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"


class WorkflowEvent(AppendOnlyModel):
    """The append-only history of a workflow: every state change, with why."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="events")
    step = models.ForeignKey(Step, null=True, blank=True, on_delete=models.CASCADE)
    target = models.ForeignKey(WorkflowTarget, null=True, blank=True, on_delete=models.CASCADE)
    at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=40)
    message = models.CharField(max_length=1000)
    actor = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["workflow", "at"], name="event_wf_at")]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"
