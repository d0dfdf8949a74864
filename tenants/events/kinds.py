"""The event kinds customers see (pure: the CLI, webhook receivers and the schema agree on these
strings). Dotted ``<subject>.<what happened>``; a kind is never renamed, only added."""

import datetime as dt
from enum import StrEnum


class EventKind(StrEnum):
    FAULT_OPENED = "fault.opened"
    FAULT_RESOLVED = "fault.resolved"
    SERVER_ISOLATED = "server.isolated"  # powered off at once by a critical fault (a leak)
    WORKFLOW_CREATED = "workflow.created"
    WORKFLOW_STATE_CHANGED = "workflow.state_changed"
    WORKFLOW_ESCALATED = "workflow.escalated"  # a step waited for a person past its limit
    ACCESS_REQUEST_CREATED = "access_request.created"
    ACCESS_REQUEST_DECIDED = "access_request.decided"
    ACCESS_REQUEST_APPROVED = "access_request.approved"  # the policy's approvals are complete
    ACCESS_REQUEST_REVOKED = "access_request.revoked"
    ACCESS_REQUEST_EXPIRED = "access_request.expired"
    ACCESS_BREAK_GLASS = "access.break_glass"  # the provider acted without approval
    KEY_STORE_DISCONNECTED = "key_store.disconnected"  # the customer pulled its keys
    KEY_STORE_CONNECTED = "key_store.connected"
    FACT_CHANGE_ANNOUNCED = "fact_change.announced"  # a provider fact change would flip decisions
    FACT_CHANGE_APPLIED = "fact_change.applied"
    # A provider root for an origin the tenant's provenance rules cover: registered (reaches a
    # rule only when the tenant re-activates it) or revoked (verifies nothing from now on).
    TRUST_ROOT_REGISTERED = "trust_root.registered"
    TRUST_ROOT_REVOKED = "trust_root.revoked"
    MAINTENANCE_WINDOW_REQUESTED = "maintenance_window.requested"
    MAINTENANCE_WINDOW_DECIDED = "maintenance_window.decided"
    WEBHOOK_DISABLED = "webhook.disabled"
    WEBHOOK_CREATED = "webhook.created"
    WEBHOOK_UPDATED = "webhook.updated"
    WEBHOOK_DELETED = "webhook.deleted"
    WEBHOOK_SECRET_ROTATED = "webhook.secret_rotated"


EVENT_KIND_LABELS: dict[EventKind, str] = {
    EventKind.FAULT_OPENED: "Fault opened",
    EventKind.FAULT_RESOLVED: "Fault resolved",
    EventKind.SERVER_ISOLATED: "UltraServer isolated",
    EventKind.WORKFLOW_CREATED: "Workflow created",
    EventKind.WORKFLOW_STATE_CHANGED: "Workflow state changed",
    EventKind.WORKFLOW_ESCALATED: "Workflow waited too long for a person",
    EventKind.ACCESS_REQUEST_CREATED: "Access requested",
    EventKind.ACCESS_REQUEST_DECIDED: "Access request decided",
    EventKind.ACCESS_REQUEST_APPROVED: "Access request approved",
    EventKind.ACCESS_REQUEST_REVOKED: "Access revoked",
    EventKind.ACCESS_REQUEST_EXPIRED: "Access request expired",
    EventKind.ACCESS_BREAK_GLASS: "Break-glass access",
    EventKind.KEY_STORE_DISCONNECTED: "Key store disconnected",
    EventKind.KEY_STORE_CONNECTED: "Key store connected",
    EventKind.FACT_CHANGE_ANNOUNCED: "Provider fact change announced",
    EventKind.FACT_CHANGE_APPLIED: "Provider fact change applied",
    EventKind.TRUST_ROOT_REGISTERED: "Provider trust root registered",
    EventKind.TRUST_ROOT_REVOKED: "Provider trust root revoked",
    EventKind.MAINTENANCE_WINDOW_REQUESTED: "Maintenance window requested",
    EventKind.MAINTENANCE_WINDOW_DECIDED: "Maintenance window decided",
    EventKind.WEBHOOK_DISABLED: "Webhook subscription disabled",
    EventKind.WEBHOOK_CREATED: "Webhook subscription created",
    EventKind.WEBHOOK_UPDATED: "Webhook subscription changed",
    EventKind.WEBHOOK_DELETED: "Webhook subscription deleted",
    EventKind.WEBHOOK_SECRET_ROTATED: "Webhook secret rotated",
}


def timestamp(value: dt.datetime | None) -> str | None:
    """A time in an event's ``data``, written as the API writes times: ISO 8601 in UTC, ``Z``."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.isoformat().replace("+00:00", "Z")
