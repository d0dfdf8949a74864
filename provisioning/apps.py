from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    """Deploy, upgrade and maintain workflows (issue: durable lifecycle workflows)."""

    name = "provisioning"
    verbose_name = "Provisioning workflows"
