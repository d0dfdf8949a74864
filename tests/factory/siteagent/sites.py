"""A simulated site served on free ports for the agent's Redfish tests: one BMC of a chosen
vendor flavour (plus the rack PDU and the site CDU), optionally over HTTPS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from factory import wire
from factory.simulator.__main__ import demo_layout
from factory.simulator.devices import build_site
from factory.simulator.faults import FaultRates
from factory.simulator.server import SiteServer
from factory.siteagent.devices import Device

USERNAME, PASSWORD = "admin", "factory-sim"
FLAVOURS = ("factory", "contoso")


@contextmanager
def site(
    flavour: str = "factory",
    *,
    flash_seconds: float = 2.0,
    flash_failure_rate: float = 0.0,
    burn_in_seconds: float = 1.0,
    ssl_context: ssl.SSLContext | None = None,
    tick_seconds: float = 0.25,
) -> Iterator[SiteServer]:
    """A one-server site (trn2, 64 chips) whose BMC is of ``flavour``; no random faults."""
    layout = demo_layout(1, 1, "trn2")
    for rack in layout["racks"]:
        for server in rack["servers"]:
            server["flavour"] = flavour
    server = SiteServer(
        build_site(
            layout,
            rates=FaultRates(scale=0.0),
            flash_seconds=flash_seconds,
            flash_failure_rate=flash_failure_rate,
            burn_in_seconds=burn_in_seconds,
        ),
        tick_seconds=tick_seconds,
        ssl_context=ssl_context,
    ).start()
    try:
        yield server
    finally:
        server.stop()


def listed(server: SiteServer, kind: str = wire.DeviceKind.BMC) -> wire.Device:
    return next(d for d in server.listing()["devices"] if d["kind"] == kind)


def device(server: SiteServer, kind: str = wire.DeviceKind.BMC, **options: object) -> Device:
    """The agent's Device for the site's first device of ``kind``."""
    entry = listed(server, kind)
    return Device(entry["kind"], entry["serial"], entry["url"], USERNAME, PASSWORD, **options)
