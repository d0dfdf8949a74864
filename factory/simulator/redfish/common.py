"""What every simulated Redfish device shares: errors, resource shapes, the service root, the
base ``Tree`` that maps URIs to payloads.

Types and versions are those of DMTF's 2025.4 schema bundle (``../shared/redfish/csdl``), which
``redfish_service_validator`` checks them against.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import hashlib
import importlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from factory import wire
from factory.simulator.devices import Site
from factory.simulator.flavours import DEFAULT as DEFAULT_FLAVOUR
from factory.simulator.flavours import Flavour

ROOT = wire.REDFISH_ROOT
SYSTEM = wire.SYSTEM_PATH
CHASSIS = f"{ROOT}/Chassis/UltraServer"
REPORT_ID = wire.ReportId.CHIPS.value


#: The Base message registry our errors cite (DSP8011); ``registries`` serves the same version.
BASE_REGISTRY = "Base.1.19"


class HttpError(Exception):
    """An error answer: its status, message and the Base registry ``MessageId`` (short names
    such as ``"PropertyMissing"`` are completed with ``BASE_REGISTRY``)."""

    def __init__(
        self,
        status: int,
        message: str,
        message_id: str | None = None,
        headers: dict[str, str] | None = None,
        extended: list[dict] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.message_id = message_id or _DEFAULT_IDS.get(status, "GeneralError")
        self.headers = headers or {}
        #: ``@Message.ExtendedInfo`` entries, when one message is not enough.
        self.extended = extended

    def body(self) -> dict:
        return error_body(self.message, self.message_id, self.extended)


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart/form-data request (``UpdateFile`` of a push update)."""

    filename: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def multipart_form(content_type: str, raw: bytes) -> dict[str, Any]:
    """A multipart/form-data body (RFC 7578), as DSP0266's ``MultipartHttpPushUri`` takes it:
    a part with a filename is an ``Upload``; an ``application/json`` part is its decoded
    object; any other part is its text. HttpError 400 when it is not well formed."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    if not message.is_multipart() or message.defects:
        raise HttpError(400, "The multipart/form-data body is malformed.", "GeneralError")
    form: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            raise HttpError(400, "A form part has no name.", "GeneralError")
        content = part.get_payload(decode=True)
        if not isinstance(content, bytes):
            raise HttpError(400, f"Form part {name} is not a leaf part.", "GeneralError")
        filename = part.get_filename()
        if filename is not None:
            form[name] = Upload(filename, content)
        elif part.get_content_type() == "application/json":
            try:
                form[name] = json.loads(content or b"{}")
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise HttpError(400, f"Form part {name} is not JSON.", "MalformedJSON") from None
        else:
            form[name] = content.decode("utf-8", "replace")
    return form


_DEFAULT_IDS = {
    400: "GeneralError",
    401: "NoValidSession",
    403: "InsufficientPrivilege",
    404: "ResourceMissingAtURI",
    405: "OperationNotAllowed",
    409: "ResourceInUse",
    412: "PreconditionFailed",
    415: "GeneralError",
    501: "OperationNotAllowed",
}


def message_id(short: str) -> str:
    return short if "." in short else f"{BASE_REGISTRY}.{short}"


def error_body(
    message: str, message_id_: str = "GeneralError", extended: list[dict] | None = None
) -> dict:
    """The DSP0266 error response: ``@Message.ExtendedInfo`` naming what went wrong."""
    full = message_id(message_id_)
    return {
        "error": {
            "code": full,
            "message": message,
            "@Message.ExtendedInfo": extended
            or [
                {
                    "MessageId": full,
                    "Message": message,
                    "MessageSeverity": "Critical" if full.endswith("GeneralError") else "Warning",
                    "Resolution": "See the message.",
                }
            ],
        }
    }


def link(path: str) -> dict:
    return {"@odata.id": path}


def now_iso() -> str:
    # Milliseconds: two samples a second apart can fall in the same wall-clock second.
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def collection(path: str, type_name: str, name: str, members: list[str]) -> dict:
    return {
        "@odata.id": path,
        "@odata.type": f"#{type_name}.{type_name}",
        "Name": name,
        "Members@odata.count": len(members),
        "Members": [link(m) for m in members],
    }


def resource(path: str, type_: str, id_: str, name: str, **fields: object) -> dict:
    return {"@odata.id": path, "@odata.type": f"#{type_}", "Id": id_, "Name": name, **fields}


def status(health: str = "OK", state: str = "Enabled") -> dict:
    return {"State": state, "Health": health}


def service(path: str, type_: str, name: str, **fields: object) -> dict:
    """A BMC service resource (update, task, telemetry): enabled and healthy."""
    id_ = type_.rsplit(".", 1)[-1]
    return resource(path, type_, id_, name, ServiceEnabled=True, Status=status(), **fields)


def service_root(device_uuid: str, **links: str) -> dict:
    return resource(
        ROOT,
        "ServiceRoot.v1_20_0.ServiceRoot",
        "RootService",
        "Root Service",
        RedfishVersion="1.21.0",
        UUID=device_uuid,
        SessionService=link(f"{ROOT}/SessionService"),
        Links={"Sessions": link(f"{ROOT}/SessionService/Sessions")},
        **{name: link(f"{ROOT}/{target}") for name, target in links.items()},
    )


def session_resource(path: str) -> dict | None:
    """Basic authentication only: the session service exists (Redfish requires the link) and
    holds no sessions."""
    if path == f"{ROOT}/SessionService":
        return resource(
            path,
            "SessionService.v1_2_0.SessionService",
            "SessionService",
            "Session Service",
            ServiceEnabled=False,
            SessionTimeout=600,
            Status=status(state="Disabled"),
            Sessions=link(f"{path}/Sessions"),
        )
    if path == f"{ROOT}/SessionService/Sessions":
        return collection(path, "SessionCollection", "Sessions", [])
    return None


@dataclass
class Stream:
    """A GET answered by a stream, not a document (the EventService's server-sent events):
    the server writes ``content_type`` and then each chunk as it comes, until the iterator
    ends or the client goes away (then ``close`` runs)."""

    chunks: Iterator[bytes]
    content_type: str = "text/event-stream"
    close: Callable[[], None] = lambda: None


class Answer(dict):
    """A GET answered with a status other than ``200`` (a running task monitor's ``202`` and
    ``Retry-After``): the body itself (a dict), with the status and headers the server sends
    with it. A plain dict is a ``200``."""

    def __init__(self, status: int, body: dict | None = None, headers: dict | None = None):
        super().__init__(body or {})
        self.status = status
        self.headers: dict[str, str] = headers or {}


#: What a write answers: status, JSON body, extra headers (``Location``...).
Reply = tuple[int, dict, dict]


class ServiceModule(Protocol):
    """A Redfish service every device kind serves the same way (SessionService, AccountService,
    Managers, EventService, TaskService, Registries...): it owns a URI space of each tree.

    Each method answers ``None`` for a path that is not its own, so the tree asks the next
    module and at last its own ``resource``/``post``. ``resource`` answers a dict (a ``200``),
    an ``Answer`` (another status, with headers) or a ``Stream``. Optional methods, found with
    ``getattr``:

    - ``attach(tree) -> None``: once, when a device's tree is built (listen on
      ``tree.site.listeners`` here: faults before the first request count too);
    - ``patch(tree, path, body) -> Reply | None``: PATCH (the server has checked ``If-Match``);
    - ``allow(tree, path) -> list[str] | None``: the methods a path of this module takes,
      for ``Allow`` and 405 (default: GET and HEAD where ``resource`` answers);
    - ``types(tree) -> list[str]``: ``@odata.type`` values for ``$metadata`` that a walk of
      the tree may not meet (members of a collection that is empty now).
    """

    def root_links(self, tree: Tree) -> dict[str, str]:
        """Service root properties to add: name -> path (``EventService`` -> its URI)."""
        ...

    def resource(self, tree: Tree, path: str) -> dict | Stream | None: ...

    def post(self, tree: Tree, path: str, body: dict) -> Reply | None: ...

    def delete(self, tree: Tree, path: str) -> Reply | None: ...


#: The service modules, asked in order before a tree's own resources. A module registers
#: itself at import (``SERVICES.append(MyService())``); ``services()`` imports those named in
#: ``SERVICE_MODULES`` first, so nobody has to remember to import them.
SERVICES: list[ServiceModule] = []
SERVICE_MODULES = ("management", "events", "tasks", "registries")
_loaded = False


def services() -> list[ServiceModule]:
    global _loaded
    if not _loaded:
        _loaded = True
        for name in SERVICE_MODULES:
            module = f"{__package__}.{name}"
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:  # a module not written (yet): skip it only
                if exc.name != module:
                    raise
    return SERVICES


class Tree:
    """A device's resources; subclasses map URIs to payloads and handle actions. ``flavour``
    says which vendor's variant of the standard the device serves.

    The server calls ``get``/``handle_post``/``handle_patch``/``handle_delete``/``allow``:
    each asks the ``SERVICES`` first, then the subclass's ``resource``/``post``.
    """

    name = "device"
    #: The administrator account the AccountService starts with (the SiteServer's credentials).
    admin_credentials: tuple[str, str] = ("admin", "factory-sim")

    def __init__(self, site: Site, flavour: Flavour = DEFAULT_FLAVOUR):
        self.site = site
        self.flavour = flavour
        self.uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"factory-sim:{self.name}"))
        #: Per-service state of this device (sessions, accounts, event log...), by service.
        self.extensions: dict[str, Any] = {}
        for module in services():
            attach = getattr(module, "attach", None)
            if attach is not None:
                attach(self)

    def get(self, path: str) -> dict | Stream:
        path = path.rstrip("/") or "/"
        if path == "/redfish":
            return {"v1": f"{ROOT}/"}
        with self.site.lock:
            body = self._resource(path)
            if body is not None and path == ROOT and isinstance(body, dict):
                for module in services():
                    body.update({k: link(v) for k, v in module.root_links(self).items()})
        if body is None:
            raise HttpError(404, f"no resource at {path}", "ResourceMissingAtURI")
        return body

    def _resource(self, path: str) -> dict | Stream | None:
        for module in services():
            body = module.resource(self, path)
            if body is not None:
                return body
        return self.resource(path)

    def exists(self, path: str) -> bool:
        with self.site.lock:
            return self._resource(path.rstrip("/") or "/") is not None

    def handle_post(self, path: str, body: dict) -> Reply:
        path = path.rstrip("/") or "/"
        with self.site.lock:
            for module in services():
                reply = module.post(self, path, body)
                if reply is not None:
                    return reply
        return self.post(path, body)

    def handle_patch(self, path: str, body: dict) -> Reply:
        path = path.rstrip("/") or "/"
        with self.site.lock:
            for module in services():
                patch = getattr(module, "patch", None)
                reply = patch(self, path, body) if patch is not None else None
                if reply is not None:
                    return reply
        return self.patch(path, body)

    def handle_delete(self, path: str) -> Reply:
        path = path.rstrip("/") or "/"
        with self.site.lock:
            for module in services():
                reply = module.delete(self, path)
                if reply is not None:
                    return reply
        raise HttpError(405, f"{path} cannot be deleted", "OperationNotAllowed")

    def allow(self, path: str) -> list[str]:
        """The methods ``path`` takes: ``Allow`` on every answer, and 405 for the others."""
        path = path.rstrip("/") or "/"
        with self.site.lock:
            for module in services():
                allow = getattr(module, "allow", None)
                methods = allow(self, path) if allow is not None else None
                if methods is not None:
                    return methods
            if "/Actions/" in path or path in self.post_only_paths():
                return ["POST"]
            return ["GET", "HEAD"] if self._resource(path) is not None else []

    def post_only_paths(self) -> tuple[str, ...]:
        """URIs outside ``/Actions/`` that take only POST (a push-update URI)."""
        return ()

    def resource(self, path: str) -> dict | Stream | None:
        raise NotImplementedError

    def post(self, path: str, body: dict) -> Reply:
        raise HttpError(405, f"no action at {path}", "OperationNotAllowed")

    def patch(self, path: str, body: dict) -> Reply:
        raise HttpError(405, f"{path} cannot be patched", "OperationNotAllowed")
