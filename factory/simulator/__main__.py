"""Start simulated site hardware.

  python -m factory.simulator --layout var/sim/FRA1.json      # a site exported by the control plane
  python -m factory.simulator --demo                          # a small built-in site
  python -m factory.simulator --device bmc --port 8443        # one device, e.g. for the validator
  python -m factory.simulator --demo --tls --ca-out ca.pem    # HTTPS, certificates of a site CA

Each device is its own Redfish service on its own port (BMCs, rack PDUs, a CDU); the control
service lists them at ``/sim/devices`` and injects faults at ``POST /sim/faults``
(``{"kind": "chip-failure", "target": SERIAL, "chip": 7}``; a leak may name its ``tray``), and
repairs at ``POST /sim/repair``: a chip swap (``{"target": SERIAL, "chip": 7}``) or a leak fixed
(``{"target": SERIAL, "kind": "leak", "tray": 3}``; no ``tray``: every tray; a CDU: every
detector).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Any

from factory.simulator.devices import build_site
from factory.simulator.faults import KINDS, FaultRates
from factory.simulator.flavours import DEFAULT as DEFAULT_FLAVOUR
from factory.simulator.flavours import FLAVOURS
from factory.simulator.hardware import SPECS
from factory.simulator.server import SiteServer
from factory.wire import DeviceKind, SiteLayout


def demo_layout(racks: int = 2, per_rack: int = 2, family: str = "trn3") -> SiteLayout:
    return {
        "site": "DEMO",
        "racks": [
            {
                "name": f"DEMO-R{r:02d}",
                "feeds": {f"DEMO-R{r:02d}-A": 230_000.0, f"DEMO-R{r:02d}-B": 230_000.0},
                "servers": [
                    {
                        "serial": f"DEMO-{family.upper()}-{r:02d}{s:02d}",
                        "family": family,
                        "position": 1 + (s - 1) * 48,
                    }
                    for s in range(1, per_rack + 1)
                ],
            }
            for r in range(1, racks + 1)
        ],
    }


def single_device_layout(kind: str, family: str) -> SiteLayout:
    layout = demo_layout(1, 1, family)
    layout["site"] = f"SIM-{kind.upper()}"
    return layout


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m factory.simulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--layout", help="site layout JSON (manage.py export_site_layout SITE)")
    what.add_argument("--demo", action="store_true", help="a built-in site: 2 racks x 2 Trn3")
    what.add_argument(
        "--device",
        choices=[k.value for k in DeviceKind],
        help="serve one device only (with --port)",
    )
    p.add_argument(
        "--family",
        choices=sorted(SPECS),
        default="trn3",
        help="system model for --demo/--device (default trn3, 144 chips)",
    )
    p.add_argument(
        "--flavour",
        choices=sorted(FLAVOURS),
        default=DEFAULT_FLAVOUR.name,
        help="the vendor flavour of every device for --demo/--device (a layout names its own)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument(
        "--advertise-host",
        help="host name the agent should use in device URLs (default: --host), e.g. in compose",
    )
    p.add_argument("--port", type=int, default=0, help="the device's port with --device")
    p.add_argument(
        "--control-port",
        type=int,
        default=0,
        help="port of the /sim control service (default: any free port)",
    )
    p.add_argument("--devices-out", help="write the device list (JSON) here for the site agent")
    p.add_argument("--seed", type=int, default=1, help="fixes every fault (default 1)")
    p.add_argument(
        "--fault-scale",
        type=float,
        default=1.0,
        help="multiply every fault rate of HARDWARE.md (e.g. 1000 for a demo)",
    )
    p.add_argument("--tick", type=float, default=1.0, help="simulated seconds per tick")
    p.add_argument(
        "--flash-seconds", type=float, default=20.0, help="how long a firmware update takes"
    )
    p.add_argument("--flash-failure-rate", type=float, default=0.02)
    p.add_argument(
        "--tls",
        action="store_true",
        help="serve every device over HTTPS with a certificate of a fresh site CA",
    )
    p.add_argument("--ca-out", help="with --tls: write the site CA's certificate (PEM) here")
    p.add_argument("--username", default="admin")
    p.add_argument("--password", default="factory-sim")
    p.add_argument("--log-level", default="INFO")
    p.epilog = "fault kinds: " + ", ".join(KINDS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s")
    if args.layout:
        with open(args.layout) as f:
            layout: SiteLayout = json.load(f)
    elif args.demo:
        layout = demo_layout(family=args.family)
    else:
        layout = single_device_layout(args.device, args.family)
    if not args.layout:
        # The site's flavour is its PDUs' and CDU's; each server's is its BMC's.
        layout["flavour"] = args.flavour
        for rack in layout["racks"]:
            for server_layout in rack["servers"]:
                server_layout["flavour"] = args.flavour
    site = build_site(
        layout,
        seed=args.seed,
        rates=FaultRates(scale=args.fault_scale),
        flash_seconds=args.flash_seconds,
        flash_failure_rate=args.flash_failure_rate,
    )
    ports = {}
    if args.device:
        by_kind: dict[str, dict[str, Any]] = {
            DeviceKind.BMC: site.bmcs,
            DeviceKind.PDU: site.pdus,
            DeviceKind.CDU: site.cdus,
        }
        ports[next(iter(by_kind[args.device]))] = args.port
        # One device only: drop the others so nothing else binds a port.
        for kind, devices in by_kind.items():
            if kind != args.device:
                devices.clear()
    context = None
    if args.tls:
        from factory.simulator import tls  # only with --tls: it needs ``cryptography``

        hosts = sorted({args.advertise_host or args.host, args.host, "localhost", "127.0.0.1"})
        material = tls.issue(site.code, [h for h in hosts if h not in ("0.0.0.0", "::")])
        context = material.server_context()
        if args.ca_out:
            with open(args.ca_out, "wb") as f:
                f.write(material.ca_pem)
    server = SiteServer(
        site,
        host=args.host,
        control_port=args.control_port,
        device_ports=ports,
        username=args.username,
        password=args.password,
        tick_seconds=args.tick,
        advertise_host=args.advertise_host,
        ssl_context=context,
    ).start()
    listing = server.listing()
    if args.devices_out:
        with open(args.devices_out, "w") as f:
            json.dump(listing, f, indent=2)
    print(json.dumps(listing), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
