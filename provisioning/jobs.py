"""Scheduled jobs (django-celery-beat runs them; schedules live in the database, editable in
admin). Each run is recorded as a JobRun with its outcome, visible in admin and the API."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from factory.agents import services as agents
from factory.agents.models import SiteAgent
from factory.inventory import lifecycle
from factory.inventory.choices import ChipHealth
from factory.inventory.models import Site, UltraServer
from factory.telemetry import faults, ingest
from factory.telemetry import services as telemetry
from factory.telemetry.choices import FaultAction
from factory.telemetry.models import Fault
from factory.telemetry.rules import Finding
from factory.wire import FaultRule
from provisioning import queue, rollout, runner
from provisioning.choices import StepState, WorkflowKind, WorkflowState
from provisioning.jobruns import JOB_CTX, recorded
from provisioning.models import (
    FirmwareRelease,
    Notification,
    Step,
    Workflow,
    WorkflowTarget,
)
from provisioning.services import MAINTAINABLE, create_workflow, refused_action
from provisioning.windows import next_opening
from tenants.errors import Conflict


def reconcile(limit: int = 5000) -> dict:
    """Re-send due steps, hand back steps whose worker vanished, expire overdue agent
    commands, bring forward steps past their deadline (their next run fails them), and advance
    workflows (soak ends, windows open, budgets)."""
    now = timezone.now()
    expired = agents.expire_overdue(now)
    recovered = runner.recover_expired_leases(now)
    overdue = Step.objects.filter(
        state=StepState.WAITING, deadline_at__lt=now, next_check_at__gt=now
    ).update(next_check_at=now)
    due = list(
        Step.objects.filter(
            state__in=[StepState.READY, StepState.WAITING],
            workflow__state__in=[
                WorkflowState.RUNNING,
                WorkflowState.PAUSED,
                WorkflowState.CANCELLING,
            ],
        )
        .filter(Q(next_check_at__isnull=True) | Q(next_check_at__lte=now))
        .values_list("pk", flat=True)[:limit]
    )
    # A step that has lost its worker before may be what kills workers: it runs alone, so it
    # cannot take a batch's leases down with it.
    alone = set(
        Step.objects.filter(pk__in=due, output__has_key="lost_leases").values_list("pk", flat=True)
    )
    for step_id in alone:
        queue.queue_step(step_id)
    queue.queue_steps([step_id for step_id in due if step_id not in alone])
    workflows = list(
        Workflow.objects.filter(
            state__in=[WorkflowState.RUNNING, WorkflowState.CANCELLING, WorkflowState.PAUSED]
        ).values_list("pk", flat=True)
    )
    for workflow_id in workflows:
        queue.queue_advance(workflow_id)
    return {
        "resent": len(due),
        "leases_recovered": recovered,
        "commands_expired": expired,
        "past_deadline": overdue,
        "workflows_checked": len(workflows),
    }


@recorded("reconciler")
def reconcile_job() -> dict:
    return reconcile()


@recorded("health-sweep")
def health_sweep() -> dict:
    """Servers flagged for maintenance (a fault) or with failed chips and no workflow looking
    after them get a maintain workflow."""
    held = WorkflowTarget.objects.filter(active=True).values("ultraserver_id")
    candidates = (
        UltraServer.objects.filter(rack__isnull=False, lifecycle_state__in=MAINTAINABLE)
        .filter(Q(in_maintenance=True) | Q(chips__health=ChipHealth.FAILED))
        .exclude(pk__in=held)
        .select_related("rack__site", "model")
        .distinct()
    )
    opened, refused = [], []
    for server in candidates[:200]:
        reason = server.fault_reason or "failed chips found by the health sweep"
        try:
            workflow, _ = create_workflow(
                WorkflowKind.MAINTAIN,
                [server],
                JOB_CTX,
                reason=f"health sweep: {reason}"[:500],
                idempotency_key=f"health:{server.pk}:{server.updated_at:%Y%m%d%H%M%S%f}",
            )
            opened.append(workflow.pk)
            action: tuple[str, str] = (FaultAction.MAINTENANCE, f"maintain workflow #{workflow.pk}")
        except Conflict as refusal:
            refused.append(f"{server.serial}: {refusal.message}")
            action = refused_action(refusal)
        # Its faults waiting at a floor (or flagged without a workflow) say what happened now.
        waiting = (FaultAction.WAITING_FLOOR, FaultAction.MAINTENANCE)
        faults.set_action(Fault.objects.filter(ultraserver=server, action__in=waiting), *action)
    return {"opened": opened, "refused": refused[:20]}


@recorded("firmware-compliance")
def firmware_compliance_scan() -> dict:
    """Servers not on their model's baseline firmware → one proposed upgrade per site and
    version, for the site's next approved window (a person starts it)."""
    now = timezone.now()
    held = WorkflowTarget.objects.filter(active=True).values("ultraserver_id")
    proposed: list[dict[str, str | int]] = []
    drifted = 0
    for release in FirmwareRelease.objects.filter(baseline=True).select_related("model"):
        servers = (
            UltraServer.objects.filter(
                model=release.model,
                lifecycle_state__in=[lifecycle.READY, lifecycle.IN_SERVICE],
                rack__isnull=False,
            )
            .exclude(firmware_version=release.version)
            .exclude(pk__in=held)
            .select_related("rack__site", "model")
        )
        by_site: dict[Site, list[UltraServer]] = {}
        for server in servers:
            assert server.rack is not None  # filtered on rack__isnull=False
            by_site.setdefault(server.rack.site, []).append(server)
            drifted += 1
        for site, members in by_site.items():
            opening = next_opening(rollout.approved_windows(site), now)
            label = f"{opening:%Y-%m-%dT%H:%M}" if opening else "no-window"
            already = Workflow.objects.filter(
                site=site,
                kind=WorkflowKind.UPGRADE,
                state=WorkflowState.PROPOSED,
                spec__firmware_version=release.version,
            ).exists()
            if already:
                continue
            try:
                workflow, created = create_workflow(
                    WorkflowKind.UPGRADE,
                    members,
                    JOB_CTX,
                    spec={"firmware_version": release.version, "proposed_for": label},
                    idempotency_key=f"compliance:{site.pk}:{release.version}:{label}",
                    reason=f"{len(members)} servers drifted from baseline {release.version}",
                    start=False,
                )
            except Exception as exc:  # one site's refusal must not stop the scan
                proposed.append({"site": site.code, "refused": str(exc)[:200]})
                continue
            if created:
                Notification.objects.create(
                    tenant_id=site.tenant_id,
                    site=site,
                    workflow=workflow,
                    kind="upgrade-proposed",
                    message=f"Upgrade of {len(members)} UltraServers to {release.version} "
                    f"proposed for the window opening {label}",
                )
                proposed.append({"site": site.code, "workflow": workflow.pk})
    return {"drifted": drifted, "proposed": proposed}


@recorded("stale-agents")
def detect_stale_agents() -> dict:
    """A site whose agent has been silent past the limit: its servers are unreachable."""
    limit = timezone.now() - dt.timedelta(seconds=settings.AGENT_SILENT_AFTER_SECONDS)
    live_sites = SiteAgent.objects.filter(revoked_at__isnull=True, last_seen_at__gte=limit)
    silent_sites = (
        SiteAgent.objects.filter(revoked_at__isnull=True)
        .exclude(site_id__in=live_sites.values("site_id"))
        .values_list("site_id", flat=True)
        .distinct()
    )
    silent = sorted(set(silent_sites))
    with transaction.atomic():
        marked = UltraServer.objects.filter(
            rack__site_id__in=silent, unreachable_since__isnull=True
        ).update(unreachable_since=timezone.now())
        opened = 0
        for site_id in silent:
            opened += faults.raise_findings(
                site_id,
                [],
                [
                    Finding(
                        FaultRule.AGENT_SILENT, "site agent silent past the limit", subject="agent"
                    )
                ],
            )
        live = set(live_sites.values_list("site_id", flat=True))
        faults.clear_keys_everywhere(
            live, faults.site_key(FaultRule.AGENT_SILENT, "agent"), "agent heard from again"
        )
    # A live agent that sends nothing for some servers: their telemetry is stale (ingest checks
    # this too, but only for an agent that posts).
    stale = sum(ingest.check_freshness(site_id)[0] for site_id in sorted(live))
    return {
        "silent_sites": silent,
        "servers_marked_unreachable": marked,
        "faults_opened": opened,
        "stale_telemetry_faults_opened": stale,
    }


@recorded("telemetry-rollup")
def telemetry_rollup() -> dict:
    """1-minute and 1-hour roll-ups of the raw per-chip samples."""
    run = telemetry.roll_up()
    return {
        "minute_buckets": run.minutes,
        "hour_buckets": run.hours,
        "late_minutes": run.backlog,
        "since": run.since.isoformat(),
    }


@recorded("telemetry-retention")
def telemetry_retention() -> dict:
    """Raw samples and roll-ups past their retention, deleted; and the watermarks of agent
    epochs not heard from for a week."""
    return {**telemetry.expire(), "epochs_forgotten": ingest.forget_epochs()}
