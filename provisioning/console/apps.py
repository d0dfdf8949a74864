from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "provisioning.console"
    label = "console"
    verbose_name = "Operator console"
