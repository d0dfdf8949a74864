from factory.inventory.models.fabric import NetworkNode
from factory.inventory.models.firmware import ComponentFirmware
from factory.inventory.models.power import PowerFeed
from factory.inventory.models.racks import Rack
from factory.inventory.models.sites import Site
from factory.inventory.models.ultraservers import Chip, ChipCounts, UltraServer

__all__ = [
    "Chip",
    "ChipCounts",
    "ComponentFirmware",
    "NetworkNode",
    "PowerFeed",
    "Rack",
    "Site",
    "UltraServer",
]
