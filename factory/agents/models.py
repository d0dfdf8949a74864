from __future__ import annotations

import uuid

from django.db import models

from factory import wire
from factory.agents.choices import CommandKind, CommandState


class SiteAgent(models.Model):
    """The one process per site that talks to the control plane, outbound only. Its credential
    is good for its own site and nothing else."""

    site = models.ForeignKey("inventory.Site", on_delete=models.PROTECT, related_name="agents")
    name = models.CharField(max_length=64)
    prefix = models.CharField(max_length=12, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    audit_exclude = frozenset({"digest"})

    class Meta:
        ordering = ["site_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["site", "name"], name="agent_name_unique_per_site")
        ]

    def __str__(self) -> str:
        return f"{self.site_id}/{self.name}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.site.tenant_id


class AgentCommand(models.Model):
    """One thing for a site's agent to do to its hardware. Carried out at most once: a claimed
    command is never handed out again; if its result never comes it expires, and whoever asked
    must read the real state (a ``query-state`` command) before trying again."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    site = models.ForeignKey("inventory.Site", on_delete=models.PROTECT, related_name="commands")
    ultraserver = models.ForeignKey(
        "inventory.UltraServer",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="commands",
    )
    kind = models.CharField(max_length=24, choices=CommandKind.choices)
    params = models.JSONField(default=dict, blank=True)
    state = models.CharField(
        max_length=12, choices=CommandState.choices, default=CommandState.QUEUED
    )
    timeout_seconds = models.PositiveIntegerField(
        default=600, help_text="How long the agent has, once it claims it, to post a result."
    )
    claimed_by = models.ForeignKey(
        SiteAgent, null=True, blank=True, on_delete=models.PROTECT, related_name="commands"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    result_due_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.CharField(max_length=wire.MAX_ERROR_LENGTH, blank=True)
    late = models.BooleanField(default=False, help_text="Result arrived after it expired.")
    requested_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(
                fields=["site", "created_at"],
                condition=models.Q(state="queued"),
                name="agentcommand_queued_by_site",
            ),
            models.Index(
                fields=["result_due_at"],
                condition=models.Q(state="claimed"),
                name="agentcommand_claimed_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"

    @property
    def owning_tenant_id(self) -> int | None:
        return self.site.tenant_id
