from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "factory.catalog"
    label = "catalog"
    verbose_name = "Hardware catalog"
