from django.apps import AppConfig
from django.conf import settings
from django.core import checks


def check_limits(app_configs, **kwargs):
    """Every rate in ``RATE_LIMITS`` parses (a bad one would otherwise surface per request)."""
    from factory.core.throttling import parse_rate

    errors = []
    for scope, rate in settings.RATE_LIMITS.items():
        try:
            parse_rate(rate)
        except ValueError as exc:
            errors.append(checks.Error(f"RATE_LIMITS[{scope!r}]: {exc}", id="core.E001"))
    return errors


class CoreConfig(AppConfig):
    name = "factory.core"
    label = "core"
    verbose_name = "Control plane core"

    def ready(self) -> None:
        # Every Django process (web, worker, beat, tests) uses the project's Celery app for
        # shared tasks, even though importing ``factory`` alone no longer loads it.
        import factory.celery  # noqa: F401

        checks.register(check_limits)
