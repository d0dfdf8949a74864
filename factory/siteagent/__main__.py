"""Run a site's agent.

  python -m factory.siteagent --control-plane https://cp.example --token aga_... \
      --devices http://127.0.0.1:9100/sim/devices --allow-plain-http \
      --outbox var/agent-FRA1.sqlite3

The token is the site's agent credential (``manage.py issue_agent_token SITE`` or
``POST /api/v1/site-agents/``); it may also come from ``FACTORY_AGENT_TOKEN``. ``--devices``
is a JSON file or URL listing the site's devices (the simulator serves one at /sim/devices).

Devices are reached over HTTPS and verified by what the operator says first:
``--pin SERIAL=sha256:<hex>``, else ``--ca-bundle`` (the site's CA), else the device's ``tls``
entry in the listing (``{"ca": path}`` or ``{"pin": "sha256:<hex>"}``), else the system's CAs.
A listing cannot loosen the operator's trust. Plain HTTP (a listing fetched from an
``http://`` URL, or a device listed at one) only with ``--allow-plain-http``: a lab, or the
simulator.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import ssl
import sys
import threading
import urllib.request
from typing import Any

from factory import wire
from factory.siteagent.agent import Agent
from factory.siteagent.devices import Device
from factory.siteagent.outbox import Outbox


def load_devices(
    source: str,
    username: str,
    password: str,
    *,
    ca_bundle: str | None = None,
    pins: dict[str, str] | None = None,
    allow_plain_http: bool = False,
) -> list[Device]:
    """The listing's devices, each with its trust: the operator's pin for it, else the site's
    CA bundle, else the listing's own ``tls`` entry. Plain HTTP, for the listing or a device,
    is a ValueError unless ``allow_plain_http``."""
    if source.startswith("http://") and not allow_plain_http:
        raise ValueError(f"{source} is plain HTTP (pass --allow-plain-http to use it)")
    if source.startswith(("http://", "https://")):
        context = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else None
        with urllib.request.urlopen(source, timeout=10, context=context) as response:
            listing: wire.DeviceListing = json.load(response)
    else:
        with open(source) as f:
            listing = json.load(f)
    required = wire.Device.__required_keys__  # kind, serial, url; the rest are extras
    devices = []
    for d in listing["devices"]:
        if not str(d["url"]).lower().startswith("https://") and not allow_plain_http:
            raise ValueError(
                f"device {d['serial']} is at {d['url']}, not https:// "
                "(pass --allow-plain-http to use it)"
            )
        extra: dict[str, Any] = {k: v for k, v in d.items() if k not in required}
        if d["serial"] in (pins or {}):
            extra["tls"] = {"pin": (pins or {})[d["serial"]]}
        elif ca_bundle:
            extra["tls"] = {"ca": ca_bundle}
        devices.append(Device(d["kind"], d["serial"], d["url"], username, password, **extra))
    return devices


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m factory.siteagent",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--control-plane", required=True, help="base URL of the control plane")
    p.add_argument("--token", default=os.environ.get("FACTORY_AGENT_TOKEN"))
    p.add_argument("--devices", required=True, help="device list: JSON file or URL")
    p.add_argument("--outbox", default="agent-outbox.sqlite3", help="durable local buffer")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between polls")
    p.add_argument("--device-username", default="admin")
    p.add_argument(
        "--device-password", default=os.environ.get("FACTORY_DEVICE_PASSWORD", "factory-sim")
    )
    p.add_argument(
        "--image-base",
        default="https://artifacts.invalid/firmware",
        help="where the BMCs fetch firmware images (inside the site)",
    )
    p.add_argument("--ca-bundle", help="the site's CA certificates (PEM) to verify devices by")
    p.add_argument(
        "--pin",
        action="append",
        default=[],
        metavar="SERIAL=sha256:HEX",
        help="trust exactly this certificate for one device (repeatable)",
    )
    p.add_argument(
        "--no-sse", action="store_true", help="poll only; do not hold devices' event streams"
    )
    p.add_argument(
        "--allow-plain-http",
        action="store_true",
        help="allow a --devices URL and device URLs over plain http:// (a lab, the simulator)",
    )
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    if not args.token:
        p.error("--token or FACTORY_AGENT_TOKEN is required")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("redfish").setLevel(logging.WARNING)  # one line per request otherwise
    pins = {}
    for pin in args.pin:
        serial, sep, value = pin.partition("=")
        if not sep:
            p.error(f"--pin {pin}: SERIAL=sha256:HEX")
        pins[serial] = value
    try:
        devices = load_devices(
            args.devices,
            args.device_username,
            args.device_password,
            ca_bundle=args.ca_bundle,
            pins=pins,
            allow_plain_http=args.allow_plain_http,
        )
    except ValueError as exc:
        p.error(f"--devices: {exc}")
    agent = Agent(
        control_plane=args.control_plane,
        token=args.token,
        devices=devices,
        outbox=Outbox(args.outbox),
        interval_s=args.interval,
        image_base=args.image_base,
        sse=not args.no_sse,
    ).start()
    logging.getLogger("factory.siteagent").info(
        "agent up: %d devices, control plane %s", len(devices), args.control_plane
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    agent.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
