"""The agent's ``--devices`` list: kind, serial and URL make the device; the rest (rack,
position, feeds) stays with it as extras."""

import json

from factory import wire
from factory.simulator.__main__ import demo_layout
from factory.simulator.devices import build_site
from factory.simulator.server import SiteServer
from factory.siteagent.__main__ import load_devices


def test_the_contract_tells_the_devices_own_keys_from_its_extras_at_run_time():
    """Only if ``NotRequired`` is read at run time (no postponed annotations in the wire
    module) does the agent know which keys are extras."""
    assert wire.Device.__required_keys__ == {"kind", "serial", "url"}
    assert wire.Device.__optional_keys__ == {"rack", "position", "feeds", "tls"}


def test_the_agent_keeps_each_devices_extras(tmp_path):
    listing = wire.DeviceListing(
        site="FRA1",
        devices=[
            wire.Device(
                kind=wire.DeviceKind.BMC,
                serial="FRA1-SRV1",
                url="http://10.0.0.1",
                rack="FRA1-R01",
                position=7,
            ),
            wire.Device(
                kind=wire.DeviceKind.PDU,
                serial=wire.pdu_source("FRA1-R01"),
                url="http://10.0.0.2",
                rack="FRA1-R01",
                feeds=["FRA1-R01-A", "FRA1-R01-B"],
            ),
            wire.Device(kind=wire.DeviceKind.CDU, serial="FRA1-CDU1", url="http://10.0.0.3"),
        ],
    )
    path = tmp_path / "devices.json"
    path.write_text(json.dumps(listing))
    bmc, pdu, cdu = load_devices(str(path), "admin", "secret", allow_plain_http=True)
    assert (bmc.kind, bmc.serial, bmc.url) == ("bmc", "FRA1-SRV1", "http://10.0.0.1")
    assert (bmc.username, bmc.password) == ("admin", "secret")
    assert bmc.extra == {"rack": "FRA1-R01", "position": 7}
    assert pdu.extra == {"rack": "FRA1-R01", "feeds": ["FRA1-R01-A", "FRA1-R01-B"]}
    assert cdu.extra == {}


def test_the_simulators_listing_loads_with_every_extra(tmp_path):
    server = SiteServer(build_site(demo_layout(1, 1))).start()
    try:
        listing = server.listing()
    finally:
        server.stop()
    path = tmp_path / "devices.json"
    path.write_text(json.dumps(listing))
    devices = load_devices(str(path), "admin", "factory-sim", allow_plain_http=True)
    assert [(d.kind, d.serial, d.url) for d in devices] == [
        (d["kind"], d["serial"], d["url"]) for d in listing["devices"]
    ]
    for device, listed in zip(devices, listing["devices"], strict=True):
        assert device.extra == {
            k: v for k, v in listed.items() if k not in ("kind", "serial", "url")
        }
    kinds = {d.kind: d for d in devices}
    assert set(kinds[wire.DeviceKind.BMC].extra) == {"rack", "position"}
    assert set(kinds[wire.DeviceKind.PDU].extra) == {"rack", "feeds"}
