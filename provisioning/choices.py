from django.db import models


class WorkflowKind(models.TextChoices):
    DEPLOY = "deploy", "Deploy"
    UPGRADE = "upgrade", "Rolling upgrade"
    MAINTAIN = "maintain", "Maintain"


class WorkflowState(models.TextChoices):
    PROPOSED = "proposed", "Proposed (not started)"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    CANCELLING = "cancelling", "Cancelling (in-flight servers finish)"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_WORKFLOW_STATES = frozenset(
    {WorkflowState.RUNNING, WorkflowState.PAUSED, WorkflowState.CANCELLING}
)
FINISHED_WORKFLOW_STATES = frozenset(
    {WorkflowState.SUCCEEDED, WorkflowState.FAILED, WorkflowState.CANCELLED}
)


class TargetState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed (real state verified)"
    ROLLED_BACK = "rolled-back", "Failed and rolled back"
    SKIPPED = "skipped", "Skipped"


FINISHED_TARGET_STATES = frozenset(
    {TargetState.SUCCEEDED, TargetState.FAILED, TargetState.ROLLED_BACK, TargetState.SKIPPED}
)


class StepState(models.TextChoices):
    PENDING = "pending", "Pending"
    READY = "ready", "Ready"
    RUNNING = "running", "Running (leased)"
    WAITING = "waiting", "Waiting on hardware or a person"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


DUE_STEP_STATES = frozenset({StepState.READY, StepState.WAITING})
FINISHED_STEP_STATES = frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED})

#: Steps that change hardware (flash, power cycle): held, not started, once a batch is stopped
#: (failure budget reached, batch aborted). Compensation steps are never held.
RISKY_STEPS = frozenset({"flash", "firmware", "power_on"})
#: The spec key naming the batch whose risky steps are held while the workflow is paused.
HOLD_RISKY_BATCH = "hold_risky_batch"
#: The steps that put a taken-out server back where it came from (``Undrain`` and its kin).
RESTORE_STEPS = frozenset({"restore", "return_to_service"})


class WindowStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed by the provider"
    APPROVED = "approved", "Approved by the tenant"
    REJECTED = "rejected", "Rejected by the tenant"


class JobOutcome(models.TextChoices):
    OK = "ok", "OK"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped (another run in progress)"
