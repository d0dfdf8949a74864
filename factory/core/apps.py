from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "factory.core"
    label = "core"
    verbose_name = "Control plane core"

    def ready(self) -> None:
        # Every Django process (web, worker, beat, tests) uses the project's Celery app for
        # shared tasks, even though importing ``factory`` alone no longer loads it.
        import factory.celery  # noqa: F401
