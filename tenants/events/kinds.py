"""The event kinds customers see (pure: the CLI, webhook receivers and the schema agree on these
strings). Dotted ``<subject>.<what happened>``; a kind is never renamed, only added."""

from enum import StrEnum


class EventKind(StrEnum):
    FAULT_OPENED = "fault.opened"
    FAULT_RESOLVED = "fault.resolved"
    WORKFLOW_CREATED = "workflow.created"
    WORKFLOW_STATE_CHANGED = "workflow.state_changed"
    ACCESS_REQUEST_CREATED = "access_request.created"
    ACCESS_REQUEST_DECIDED = "access_request.decided"
    MAINTENANCE_WINDOW_REQUESTED = "maintenance_window.requested"
    MAINTENANCE_WINDOW_DECIDED = "maintenance_window.decided"
    WEBHOOK_DISABLED = "webhook.disabled"


EVENT_KIND_LABELS: dict[EventKind, str] = {
    EventKind.FAULT_OPENED: "Fault opened",
    EventKind.FAULT_RESOLVED: "Fault resolved",
    EventKind.WORKFLOW_CREATED: "Workflow created",
    EventKind.WORKFLOW_STATE_CHANGED: "Workflow state changed",
    EventKind.ACCESS_REQUEST_CREATED: "Access requested",
    EventKind.ACCESS_REQUEST_DECIDED: "Access request decided",
    EventKind.MAINTENANCE_WINDOW_REQUESTED: "Maintenance window requested",
    EventKind.MAINTENANCE_WINDOW_DECIDED: "Maintenance window decided",
    EventKind.WEBHOOK_DISABLED: "Webhook subscription disabled",
}
