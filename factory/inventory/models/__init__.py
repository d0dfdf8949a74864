from factory.inventory.models.power import PowerFeed
from factory.inventory.models.racks import Rack
from factory.inventory.models.sites import Site
from factory.inventory.models.ultraservers import Chip, UltraServer

__all__ = ["Chip", "PowerFeed", "Rack", "Site", "UltraServer"]
