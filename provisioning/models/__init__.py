from provisioning.models.records import JobRun, Notification, PartReplacement, SchedulerLease
from provisioning.models.windows import CapacityFloor, FirmwareRelease, MaintenanceWindow
from provisioning.models.workflows import Step, Workflow, WorkflowEvent, WorkflowTarget

__all__ = [
    "CapacityFloor",
    "FirmwareRelease",
    "JobRun",
    "MaintenanceWindow",
    "Notification",
    "PartReplacement",
    "SchedulerLease",
    "Step",
    "Workflow",
    "WorkflowEvent",
    "WorkflowTarget",
]
