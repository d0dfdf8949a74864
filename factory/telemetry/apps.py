from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    name = "factory.telemetry"
    label = "telemetry"
    verbose_name = "Telemetry and health"

    def ready(self) -> None:
        from factory.agents.signals import command_finished
        from factory.telemetry import isolation, policy

        policy.check()  # a wrong FACTORY_FAULT_POLICY stops startup, naming the rule
        command_finished.connect(
            isolation.on_command_finished, dispatch_uid="telemetry.settle_isolation"
        )
