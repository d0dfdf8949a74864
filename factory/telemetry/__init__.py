"""Telemetry: ingest from site agents, storage (raw, latest, roll-ups), health rules → faults,
and the fleet's Prometheus metrics."""
