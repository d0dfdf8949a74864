from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "factory.inventory"
    label = "inventory"
    verbose_name = "Inventory: sites, racks, power, UltraServers"
