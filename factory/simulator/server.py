"""HTTP for the simulated devices: one Redfish service per device, one port each (as on a real
management network), and a control service to list devices and inject faults."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from factory import wire
from factory.simulator.devices import Bmc, Cdu, RackPdu, Site
from factory.simulator.faults import KINDS
from factory.simulator.redfish import (
    ROOT,
    BmcTree,
    CduTree,
    HttpError,
    PduTree,
    Tree,
    error_body,
)
from factory.wire import DeviceKind

log = logging.getLogger("factory.simulator")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


Headers = dict[str, str]
#: What a handler answers: status, JSON body, extra headers.
Answer = tuple[int, Mapping[str, object], Headers]
GetHandler = Callable[[str], Answer]
PostHandler = Callable[[str, dict[str, Any]], Answer]


def _handler(
    handle_get: GetHandler, handle_post: PostHandler, credentials: str | None
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: a site is many devices
            log.debug("%s %s", self.address_string(), format % args)

        def _send(
            self, status: int, body: Mapping[str, object] | None, headers: Headers | None = None
        ) -> None:
            data = b"" if status == 204 else json.dumps(body or {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("OData-Version", "4.0")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if data:
                self.wfile.write(data)

        def _authorized(self) -> bool:
            path = self.path.split("?")[0].rstrip("/")
            if credentials is None or path in ("/redfish", ROOT) or path.startswith("/sim"):
                return True
            header = self.headers.get("Authorization", "")
            return header == f"Basic {credentials}"

        def _run(self, answer: Callable[[], Answer]) -> None:
            if not self._authorized():
                return self._send(
                    401,
                    error_body("authentication required"),
                    {"WWW-Authenticate": 'Basic realm="simulated BMC"'},
                )
            try:
                status, body, headers = answer()
            except HttpError as exc:
                return self._send(exc.status, error_body(exc.message))
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                return self._send(400, error_body(f"bad request: {exc}"))
            self._send(status, body, headers)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            self._run(lambda: handle_get(path))

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                return self._send(400, error_body("body is not JSON"))
            if not isinstance(body, dict):
                return self._send(400, error_body("body must be a JSON object"))
            path = self.path.split("?")[0]
            self._run(lambda: handle_post(path, body))

    return Handler


def _tree_handlers(tree: Tree) -> tuple[GetHandler, PostHandler]:
    def get(path: str) -> Answer:
        return 200, tree.get(path), {}

    def post(path: str, body: dict[str, Any]) -> Answer:
        return tree.post(path, body)

    return get, post


class SiteServer:
    """Serves every device of a site, each on its own port, plus ``/sim`` on ``control_port``."""

    def __init__(
        self,
        site: Site,
        *,
        host: str = "127.0.0.1",
        control_port: int = 0,
        device_ports: dict[str, int] | None = None,
        username: str = "admin",
        password: str = "factory-sim",
        tick_seconds: float = 1.0,
        advertise_host: str | None = None,
    ):
        self.site = site
        self.host = host
        shown = advertise_host or host
        self.tick_seconds = tick_seconds
        self.credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.servers: list[_Server] = []
        self.devices: list[wire.Device] = []
        ports = device_ports or {}

        def serve(tree: Tree) -> str:
            """Serve a device's tree on its own port; its URL."""
            get, post = _tree_handlers(tree)
            server = _Server((host, ports.get(tree.name, 0)), _handler(get, post, self.credentials))
            self.servers.append(server)
            return f"http://{shown}:{server.server_address[1]}"

        for bmc in site.bmcs.values():
            self.devices.append(
                wire.Device(
                    kind=DeviceKind.BMC,
                    serial=bmc.serial,
                    url=serve(BmcTree(site, bmc)),
                    rack=bmc.rack,
                    position=bmc.position,
                )
            )
        for pdu in site.pdus.values():
            self.devices.append(
                wire.Device(
                    kind=DeviceKind.PDU,
                    serial=pdu.serial,
                    url=serve(PduTree(site, pdu)),
                    rack=pdu.rack,
                    feeds=sorted(pdu.feeds),
                )
            )
        for cdu in site.cdus.values():
            self.devices.append(
                wire.Device(kind=DeviceKind.CDU, serial=cdu.serial, url=serve(CduTree(site, cdu)))
            )
        control = _Server(
            (host, control_port), _handler(self._control_get, self._control_post, None)
        )
        self.servers.insert(0, control)
        self.control_url = f"http://{shown}:{control.server_address[1]}"
        self._stop = threading.Event()

    def listing(self) -> wire.DeviceListing:
        """What ``/sim/devices`` serves: the site's devices, the agent's ``--devices``."""
        return wire.DeviceListing(
            site=self.site.code, control=self.control_url, devices=list(self.devices)
        )

    def _control_get(self, path: str) -> Answer:
        if path.rstrip("/") == "/sim/devices":
            return 200, self.listing(), {}
        if path.rstrip("/") == "/sim/events":
            with self.site.lock:
                devices: list[Bmc | RackPdu | Cdu] = [
                    *self.site.bmcs.values(),
                    *self.site.pdus.values(),
                    *self.site.cdus.values(),
                ]
                events = [
                    {
                        "kind": f.kind,
                        "target": f.target,
                        "chip": f.chip,
                        "link": f.link,
                        "feed": f.feed,
                        "duration_s": f.duration_s,
                    }
                    for device in devices
                    for f in device.events
                ]
            return 200, {"now": self.site.now, "events": events}, {}
        raise HttpError(404, f"no resource at {path}")

    def _control_post(self, path: str, body: dict[str, Any]) -> Answer:
        if path.rstrip("/") == "/sim/faults":
            if body.get("kind") not in KINDS:
                raise HttpError(400, f"kind must be one of {', '.join(KINDS)}")
            try:
                fault = self.site.inject(
                    body["kind"],
                    str(body.get("target", "")),
                    chip=body.get("chip"),
                    link=body.get("link"),
                    feed=body.get("feed"),
                    duration_s=float(body.get("duration_s", 60.0)),
                )
            except KeyError as exc:
                raise HttpError(404, f"no device {exc}") from None
            except IndexError:
                raise HttpError(400, "chip or link out of range") from None
            return 201, {"injected": fault.__dict__}, {}
        if path.rstrip("/") == "/sim/repair":
            bmc = self.site.bmcs.get(str(body.get("target", "")))
            if bmc is None:
                raise HttpError(404, "no such BMC")
            with self.site.lock:
                bmc.replace_chip(int(body["chip"]))
            return 200, {"replaced": body["chip"]}, {}
        raise HttpError(404, f"no action at {path}")

    def start(self) -> SiteServer:
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        threading.Thread(target=self._clock, daemon=True).start()
        return self

    def _clock(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.site.advance(self.tick_seconds)
            next_at += self.tick_seconds
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        for server in self.servers:
            server.shutdown()
            server.server_close()
