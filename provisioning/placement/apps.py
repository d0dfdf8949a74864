from django.apps import AppConfig


class PlacementConfig(AppConfig):
    name = "provisioning.placement"
    label = "placement"
    verbose_name = "Placement: capacity reservations and workload units"
