from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "factory.core"
    label = "core"
    verbose_name = "Control plane core"
