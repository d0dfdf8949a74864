"""What customers care about, as a durable event log: faults, workflow state changes, access
requests, maintenance windows. Read by polling (`/api/v1/events/`), by a watch stream (SSE) and
pushed to per-tenant webhooks."""
