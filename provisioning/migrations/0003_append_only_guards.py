"""Workflow history, part replacements and tenant notifications are append-only in the database,
like the audit log."""

from django.db import migrations

from tenants.append_only import guard


class Migration(migrations.Migration):
    dependencies = [("provisioning", "0002_scheduled_jobs")]
    operations = [
        guard("provisioning_workflowevent", "workflow events"),
        guard("provisioning_partreplacement", "part replacements"),
        guard("provisioning_notification", "notifications"),
    ]
