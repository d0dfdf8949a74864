"""A simulated site served on free ports for the agent's Redfish tests: one BMC of a chosen
vendor flavour (plus the rack PDU and the site CDU), optionally over HTTPS."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


class StaticService:
    """A small Redfish service of another vendor's making, for what the simulator does not
    do: it serves ``resources`` (path → body, or a callable of the handler answering itself)
    with Basic authentication, has no session service (POST Sessions is 405), and counts every
    request it is sent (``requests``: (method, path, had credentials))."""

    def __init__(self, resources: dict[str, object], delay_s: float = 0.0):
        self.resources = resources
        self.delay_s = delay_s
        self.requests: list[tuple[str, str, bool]] = []
        expected = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def answer(self, status: int, body: dict, **headers: str) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _serve(self) -> None:
                credentials = self.headers.get("Authorization")
                outer.requests.append((self.command, self.path, credentials is not None))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "POST" and self.path.endswith("/Sessions"):
                    return self.answer(405, {"error": {"message": "no sessions"}}, Allow="GET")
                if credentials != expected:
                    return self.answer(401, {"error": {"message": "Basic required"}})
                time.sleep(outer.delay_s)
                found = outer.resources.get(self.path.split("?", 1)[0])
                if callable(found):
                    return found(self)
                if found is None:
                    return self.answer(404, {"error": {"message": "not here"}})
                self.answer(200, found)

            do_GET = do_POST = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def device(self, kind: str = wire.DeviceKind.BMC, serial: str = "OTHER-1") -> Device:
        return Device(kind, serial, self.url, USERNAME, PASSWORD, timeout=5)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
