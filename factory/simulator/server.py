"""HTTP for the simulated devices: one Redfish service per device, one port each (as on a real
management network), and a control service to list devices and inject faults."""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from factory import wire
from factory.simulator.devices import Bmc, Cdu, RackPdu, Site
from factory.simulator.faults import KINDS, Fault
from factory.simulator.redfish import (
    ROOT,
    BmcTree,
    CduTree,
    HttpError,
    PduTree,
    Tree,
    common,
    error_body,
    management,
    metadata,
)
from factory.simulator.redfish.common import Stream
from factory.wire import DeviceKind, EventKind

log = logging.getLogger("factory.simulator")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that speaks plain HTTP to HTTPS, or hangs up, is the client's problem."""
        log.debug("connection from %s failed", client_address, exc_info=True)


Headers = dict[str, str]
#: What a handler answers: status, JSON body, extra headers.
Answer = tuple[int, Mapping[str, object], Headers]
GetHandler = Callable[[str], Answer]
PostHandler = Callable[[str, dict[str, Any]], Answer]

JSON = "application/json; charset=utf-8"
SCHEMAS = "http://redfish.dmtf.org/schemas/v1"
#: Every method a Redfish service may be asked; those a URI does not take get 405 and ``Allow``.
METHODS = ("GET", "HEAD", "POST", "PATCH", "PUT", "DELETE")


def etag_of(body: Mapping[str, object]) -> str:
    """A strong ETag of a representation (``@odata.etag`` itself excluded)."""
    data = json.dumps(
        {k: v for k, v in body.items() if k != "@odata.etag"}, sort_keys=True, default=str
    )
    return '"' + hashlib.sha1(data.encode()).hexdigest()[:16] + '"'


def described_by(body: Mapping[str, object]) -> str | None:
    """The ``Link: <schema>; rel=describedby`` of a resource, from its ``@odata.type``."""
    odata_type = body.get("@odata.type")
    if not isinstance(odata_type, str):
        return None
    parts = odata_type.lstrip("#").split(".")
    name = ".".join(parts[:2]) if len(parts) == 3 else parts[0]
    return f"<{SCHEMAS}/{name}.json>; rel=describedby"


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 plumbing shared by device and control services: JSON answers, bodies."""

    protocol_version = "HTTP/1.1"
    server_version = "FactorySimulator/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: a site is many devices
        log.debug("%s %s", self.address_string(), format % args)

    def _send_bytes(
        self, status: int, data: bytes, content_type: str, headers: Headers | None = None
    ) -> None:
        head = self.command == "HEAD"
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
        self.send_header("OData-Version", "4.0")
        self.send_header("Cache-Control", "no-cache")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if data and not head and status != 204:
            self.wfile.write(data)

    def _send(
        self, status: int, body: Mapping[str, object] | None, headers: Headers | None = None
    ) -> None:
        data = b"" if status == 204 else json.dumps(body or {}).encode()
        self._send_bytes(status, data, JSON, headers)

    def _error(self, exc: HttpError, headers: Headers | None = None) -> None:
        self._send(exc.status, exc.body(), {**exc.headers, **(headers or {})})

    def _body(self) -> dict[str, Any]:
        """The request's JSON object ({} when there is none); HttpError 400 otherwise."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type") or ""
        if content_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
            return common.multipart_form(content_type, raw)
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HttpError(400, "The request body is not JSON.", "MalformedJSON") from None
        if not isinstance(body, dict):
            raise HttpError(400, "The request body must be a JSON object.", "MalformedJSON")
        return body


def _control_handler(handle_get: GetHandler, handle_post: PostHandler) -> type[_Handler]:
    """The simulator's own ``/sim`` service: no Redfish, no authentication."""

    class Handler(_Handler):
        def _run(self, answer: Callable[[], Answer]) -> None:
            try:
                status, body, headers = answer()
            except HttpError as exc:
                return self._error(exc)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                return self._send(400, error_body(f"bad request: {exc}"))
            self._send(status, body, headers)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            self._run(lambda: handle_get(path))

        do_HEAD = do_GET

        def do_POST(self) -> None:
            path = self.path.split("?")[0]
            try:
                body = self._body()
            except HttpError as exc:
                return self._error(exc)
            self._run(lambda: handle_post(path, body))

    return Handler


def _stream_request_context() -> ContextVar[Any] | None:
    """The EventService's view of the request that opens its stream (query and headers:
    ``$filter``, ``Last-Event-ID``), when that module is loaded."""
    events = sys.modules.get("factory.simulator.redfish.events")
    return getattr(events, "SSE_REQUEST", None)


def _device_handler(tree: Tree) -> type[_Handler]:
    """A device's Redfish service (DSP0266): authentication, conditional requests, 405 with
    ``Allow``, HEAD, ``$metadata``, streams."""

    class Handler(_Handler):
        _query = ""

        def _allow(self, path: str) -> list[str]:
            if path in (f"{ROOT}/$metadata", f"{ROOT}/odata", "/redfish"):
                return ["GET", "HEAD"]
            return tree.allow(path)

        def _handle(self) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path).rstrip("/") or "/"
            try:
                body = self._body() if self.command in ("POST", "PATCH", "PUT") else {}
                if self.command in ("GET", "HEAD"):
                    self._body()  # a GET may carry a body: read it, ignore it
                self._query = url.query
                self._check_request()
                management.authorize(tree, self.command, path, self.headers, body)
                self._dispatch(path, body)
            except HttpError as exc:
                self._error(exc)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                log.exception("bad request %s %s", self.command, self.path)
                self._send(400, error_body(f"bad request: {exc}"))

        def _check_request(self) -> None:
            version = self.headers.get("OData-Version")
            if version is not None and version.strip() != "4.0":
                raise HttpError(
                    412, f"OData-Version {version} is not supported (4.0 is)", "PreconditionFailed"
                )

        def _check_query(self) -> None:
            """Documents support no ``$`` query (DSP0266: 501); a stream reads its own
            (``$filter`` of the SSE stream)."""
            for key, _ in parse_qsl(self._query, keep_blank_values=True):
                if key.startswith("$"):
                    raise HttpError(
                        501, f"The query parameter {key} is not supported.", "QueryNotSupported"
                    )

        def _dispatch(self, path: str, body: dict[str, Any]) -> None:
            method = self.command
            allowed = self._allow(path)
            if method in ("GET", "HEAD"):
                return self._get(path, allowed)
            self._check_query()
            if allowed and method not in allowed:
                raise HttpError(
                    405,
                    f"{method} is not allowed on {path}",
                    "OperationNotAllowed",
                    {"Allow": ", ".join(allowed)},
                )
            if method == "POST":
                status, out, headers = tree.handle_post(path, body)
            elif method == "PATCH":
                self._check_etag(path)
                status, out, headers = tree.handle_patch(path, body)
            elif method == "DELETE":
                status, out, headers = tree.handle_delete(path)
            elif not allowed:
                raise HttpError(404, f"no resource at {path}", "ResourceMissingAtURI")
            else:
                raise HttpError(
                    405,
                    f"{method} is not allowed on {path}",
                    "OperationNotAllowed",
                    {"Allow": ", ".join(allowed)},
                )
            if status < 300 and isinstance(out, dict) and "@odata.id" in out:
                out = {**out, "@odata.etag": etag_of(out)}
                headers = {"ETag": out["@odata.etag"], **headers}
            self._send(status, out, headers)

        def _check_etag(self, path: str) -> None:
            """``If-Match``: the write applies only to the representation the client saw."""
            wanted = self.headers.get("If-Match")
            if wanted is None:
                return
            current = tree.get(path)
            if isinstance(current, Stream):
                current.close()
                return
            tags = [t.strip() for t in wanted.split(",")]
            if "*" not in tags and etag_of(current) not in [t.removeprefix("W/") for t in tags]:
                raise HttpError(
                    412,
                    "The resource has changed since it was read (If-Match).",
                    "PreconditionFailed",
                )

        def _get(self, path: str, allowed: list[str]) -> None:
            if path == f"{ROOT}/$metadata":
                document = metadata.metadata_document(tree).encode()
                return self._send_bytes(200, document, "application/xml; charset=utf-8")
            if path == f"{ROOT}/odata":
                return self._send(200, metadata.service_document(tree))
            context = _stream_request_context()
            reset = context.set((self._query, dict(self.headers.items()))) if context else None
            try:
                answer = tree.get(path)
            finally:
                if context is not None and reset is not None:
                    context.reset(reset)
            if isinstance(answer, Stream):
                return self._stream(answer)
            self._check_query()
            # A plain document is a 200; a ``common.Answer`` says its own status and headers
            # (a running task monitor: 202 + ``Retry-After``).
            status = answer.status if isinstance(answer, common.Answer) else 200
            body = dict(answer)
            headers: Headers = {"Allow": ", ".join(allowed or ["GET", "HEAD"])}
            if status == 200 and "@odata.id" in body:
                body["@odata.etag"] = etag_of(body)
                headers["ETag"] = body["@odata.etag"]
            link_header = described_by(body)
            if link_header:
                headers["Link"] = link_header
            if isinstance(answer, common.Answer):
                headers.update(answer.headers)
            tag = self.headers.get("If-None-Match")
            if tag is not None and headers.get("ETag") in [t.strip() for t in tag.split(",")]:
                return self._send_bytes(304, b"", JSON, headers)
            if status == 204:
                return self._send_bytes(204, b"", JSON, headers)
            self._send(status, body, headers)

        def _stream(self, stream: Stream) -> None:
            """A stream: no Content-Length, each chunk flushed as it comes, the connection
            closed at its end; ``close`` runs however it ends."""
            self.close_connection = True
            try:
                self.send_response(200)
                self.send_header("Content-Type", stream.content_type)
                self.send_header("Cache-Control", "no-cache")
                self.send_header("OData-Version", "4.0")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.flush()
                if self.command == "HEAD":
                    return
                for chunk in stream.chunks:
                    if chunk:
                        self.wfile.write(chunk)
                        self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                pass  # the client went away
            finally:
                stream.close()

        def do_GET(self) -> None:
            self._handle()

        do_HEAD = do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    return Handler


def _optional_int(body: dict[str, Any], name: str) -> int | None:
    """An optional integer of a ``/sim`` request; HttpError 400 naming it otherwise."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise HttpError(400, f"{name} must be an integer", "PropertyValueTypeError")
    return value


def _tray_of(device: Bmc | RackPdu | Cdu, fault: Fault) -> int | None:
    """The tray a fault is at: its own, or for a BMC's leak the tray it was placed on."""
    if fault.tray is None and fault.kind == EventKind.LEAK and isinstance(device, Bmc):
        try:
            return device.leak_tray(fault)
        except IndexError:
            return None
    return fault.tray


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
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.site = site
        self.host = host
        shown = advertise_host or host
        self.tick_seconds = tick_seconds
        self.username, self.password = username, password
        self.ssl_context = ssl_context
        scheme = "https" if ssl_context is not None else "http"
        self.servers: list[_Server] = []
        self.trees: dict[str, Tree] = {}
        self.devices: list[wire.Device] = []
        ports = device_ports or {}

        def serve(tree: Tree) -> str:
            """Serve a device's tree on its own port; its URL."""
            tree.admin_credentials = (username, password)
            server = _Server((host, ports.get(tree.name, 0)), _device_handler(tree))
            if ssl_context is not None:
                # The handshake happens in the request's thread, not in the accept loop.
                server.socket = ssl_context.wrap_socket(
                    server.socket, server_side=True, do_handshake_on_connect=False
                )
            port = server.server_address[1]
            management.bind(tree, port, tls=ssl_context is not None)
            self.servers.append(server)
            self.trees[tree.name] = tree
            return f"{scheme}://{shown}:{port}"

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
            (host, control_port), _control_handler(self._control_get, self._control_post)
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
                        "tray": _tray_of(device, f),
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
                    chip=_optional_int(body, "chip"),
                    link=_optional_int(body, "link"),
                    feed=body.get("feed"),
                    duration_s=float(body.get("duration_s", 60.0)),
                    tray=_optional_int(body, "tray"),
                )
            except KeyError as exc:
                raise HttpError(404, f"no device {exc}") from None
            except IndexError:
                raise HttpError(400, "chip, link or tray out of range") from None
            return 201, {"injected": fault.__dict__}, {}
        if path.rstrip("/") == "/sim/repair":
            return self._repair(body)
        raise HttpError(404, f"no action at {path}")

    def _repair(self, body: dict[str, Any]) -> Answer:
        """What a technician does: swap a chip (``kind`` ``chip``, the default), or fix a leak
        (``leak``: a BMC's tray ``tray``, or all its trays; a CDU's every detector)."""
        kind = body.get("kind", "chip")
        target = str(body.get("target", ""))
        if kind == "leak":
            tray = _optional_int(body, "tray")
            with self.site.lock:
                bmc, cdu = self.site.bmcs.get(target), self.site.cdus.get(target)
                if bmc is not None:
                    if tray is not None and not 0 <= tray < bmc.spec.trays:
                        raise HttpError(400, f"tray {tray} out of range (0-{bmc.spec.trays - 1})")
                    bmc.clear_leak(tray)
                    return 200, {"repaired": "leak", "target": target, "tray": tray}, {}
                if cdu is not None:
                    if tray is not None:
                        raise HttpError(400, "tray: a CDU has no trays")
                    cdu.repair_leaks()
                    return 200, {"repaired": "leak", "target": target}, {}
            raise HttpError(404, f"no BMC or CDU {target!r}")
        if kind != "chip":
            raise HttpError(400, "kind must be chip or leak")
        bmc = self.site.bmcs.get(target)
        if bmc is None:
            raise HttpError(404, "no such BMC")
        with self.site.lock:
            bmc.replace_chip(int(body["chip"]))
        return 200, {"replaced": body["chip"]}, {}

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
