"""A site as the simulator needs it: racks, feeds and UltraServers (with the EFA fabric's nodes
above each), exported from inventory."""

from __future__ import annotations

from factory import wire
from factory.inventory.fabric import server_paths
from factory.inventory.models import PowerFeed, Rack, Site, UltraServer


def family_of(model_slug: str) -> str:
    """``trn3-ultraserver`` → ``trn3``: the simulator's system spec."""
    return model_slug.split("-")[0]


def site_layout(site: Site) -> wire.SiteLayout:
    """What the simulator serves for ``site`` (``python -m factory.simulator --layout``)."""
    feeds: dict[int, dict[str, float]] = {}
    for feed in PowerFeed.objects.filter(rack__site=site).order_by("name"):
        feeds.setdefault(feed.rack_id, {})[feed.name] = round(feed.capacity_watts, 1)
    servers: dict[int, list[wire.LayoutServer]] = {}
    placed = UltraServer.objects.filter(rack__site=site)
    paths = server_paths(placed)
    for server in placed.select_related("model").order_by("position"):
        if server.rack_id is None or server.position is None:
            continue  # unplaced; the filter leaves none (rack and position are set together)
        entry: wire.LayoutServer = {
            "serial": server.serial,
            "family": family_of(server.model.slug),
            "position": server.position,
            "firmware": server.firmware_version,
        }
        if server.pk in paths:
            entry["network_nodes"] = list(paths[server.pk])
        servers.setdefault(server.rack_id, []).append(entry)
    return {
        "site": site.code,
        "racks": [
            {"name": rack.name, "feeds": feeds.get(rack.pk, {}), "servers": servers[rack.pk]}
            for rack in Rack.objects.filter(site=site).order_by("name")
            if rack.pk in servers
        ],
    }
