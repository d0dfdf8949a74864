"""The operator console: the pages people watch (fleet, sites, UltraServers, workflows,
sovereignty). Server-rendered, refreshed with htmx, every asset served locally.

It lives in ``provisioning`` because it shows everything below it (inventory, telemetry,
workflows, sovereignty) and DESIGN.md lets imports only go downwards. Editing records stays in
the Django admin; here people look, approve, and steer workflows.
"""
