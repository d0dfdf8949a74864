from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    name = "factory.telemetry"
    label = "telemetry"
    verbose_name = "Telemetry and health"
