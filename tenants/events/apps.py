from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "tenants.events"
    label = "events"
    verbose_name = "Events and webhooks"
