"""A small EFA fabric for the reservation, unit and placement API tests (helper of
``test_reservations.py``, ``test_units.py`` and ``test_api.py``).

Site ``<code>`` of a tenant, contracted for far more power than it draws: spine S1 over leaves
L1 and L2, spine S2 over leaf L3; one Trn3 UltraServer per rack (42U each), in service, built
through the real services (validated, chips and all) and then attached to its leaf.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.utils import timezone

from factory.catalog.models import UltraServerModel
from factory.inventory.models import NetworkNode, Site, UltraServer
from tests.support.fleet import CTX, make_rack, make_server, make_site
from tests.support.workflows import put_in_service

LAYOUT = {"L1": 3, "L2": 3, "L3": 2}
TRN3 = "trn3-ultraserver"


@dataclass
class Fab:
    site: Site
    nodes: dict[str, NetworkNode]
    servers: dict[str, UltraServer] = field(default_factory=dict)  # "L1-1" → server
    leaf_of: dict[str, str] = field(default_factory=dict)  # serial → leaf name

    @property
    def model(self) -> UltraServerModel:
        return UltraServerModel.objects.get(slug=TRN3)

    def under(self, leaf: str) -> set[str]:
        return {serial for serial, name in self.leaf_of.items() if name == leaf}

    def serials(self, ids) -> set[str]:
        return set(UltraServer.objects.filter(pk__in=list(ids)).values_list("serial", flat=True))


def build_fab(tenant, code: str = "FAB1", layout: dict[str, int] | None = None) -> Fab:
    site = make_site(tenant, code, power_kw="60000", cooling_kw="60000")
    s1 = NetworkNode.objects.create(site=site, name=f"{code}-SPINE-1", layer=1)
    s2 = NetworkNode.objects.create(site=site, name=f"{code}-SPINE-2", layer=1)
    nodes = {
        "S1": s1,
        "S2": s2,
        "L1": NetworkNode.objects.create(site=site, name=f"{code}-LEAF-1", layer=2, parent=s1),
        "L2": NetworkNode.objects.create(site=site, name=f"{code}-LEAF-2", layer=2, parent=s1),
        "L3": NetworkNode.objects.create(site=site, name=f"{code}-LEAF-3", layer=2, parent=s2),
    }
    fab = Fab(site, nodes)
    n = 0
    for leaf, count in (layout or LAYOUT).items():
        for i in range(1, count + 1):
            n += 1
            rack = make_rack(site, f"{code}-R{n:02d}")
            server = put_in_service(make_server(f"{code}-{leaf}-{i}", rack=rack))
            UltraServer.objects.filter(pk=server.pk).update(network_node=nodes[leaf])
            server.refresh_from_db()
            fab.servers[f"{leaf}-{i}"] = server
            fab.leaf_of[server.serial] = leaf
    return fab


def hours(n: float) -> dt.datetime:
    return timezone.now() + dt.timedelta(hours=n)


__all__ = ["CTX", "Fab", "build_fab", "hours"]
