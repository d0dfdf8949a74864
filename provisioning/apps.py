from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    name = "provisioning"
    verbose_name = "Provisioning: lifecycle workflows and maintenance"

    def ready(self) -> None:
        from factory.agents.signals import command_finished

        command_finished.connect(_wake_step, dispatch_uid="provisioning.wake_step")


def _wake_step(sender, command_id, requested_by: str, **kwargs) -> None:
    """An agent answered: look at the waiting step now rather than at its next poll."""
    if not requested_by.startswith("step:"):
        return
    from provisioning.engine import hint
    from provisioning.models import Step
    from provisioning.tasks import run_step

    step_id = int(requested_by.split(":", 1)[1])
    Step.objects.filter(pk=step_id, state="waiting").update(next_check_at=None)
    hint(run_step, step_id)
