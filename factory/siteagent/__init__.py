"""The site agent: one process per site, the only thing at the site that talks to the control
plane, and only outbound. It polls the site's devices over Redfish (DMTF's ``redfish`` client),
ships telemetry, carries out commands, and keeps everything in a local outbox while the
control plane cannot be reached. No Django: it runs at the site, not in the control plane.
"""
