from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "factory.agents"
    label = "agents"
    verbose_name = "Site agents and their command queue"
