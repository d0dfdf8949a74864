from django.apps import AppConfig


class SovereigntyConfig(AppConfig):
    name = "tenants.sovereignty"
    label = "sovereignty"
    verbose_name = "Sovereignty"
