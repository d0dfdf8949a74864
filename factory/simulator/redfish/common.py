"""What every simulated Redfish device shares: errors, resource shapes, the service root, the
base ``Tree`` that maps URIs to payloads.

Types and versions are those of DMTF's 2025.4 schema bundle (``../shared/redfish/csdl``), which
``redfish_service_validator`` checks them against.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from factory import wire
from factory.simulator.devices import Site
from factory.simulator.flavours import DEFAULT as DEFAULT_FLAVOUR
from factory.simulator.flavours import Flavour

ROOT = wire.REDFISH_ROOT
SYSTEM = wire.SYSTEM_PATH
CHASSIS = f"{ROOT}/Chassis/UltraServer"
REPORT_ID = wire.ReportId.CHIPS.value


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(message: str) -> dict:
    return {
        "error": {
            "code": "Base.1.0.GeneralError",
            "message": message,
            "@Message.ExtendedInfo": [],
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


class Tree:
    """A device's resources; subclasses map URIs to payloads and handle actions. ``flavour``
    says which vendor's variant of the standard the device serves."""

    def __init__(self, site: Site, flavour: Flavour = DEFAULT_FLAVOUR):
        self.site = site
        self.flavour = flavour
        self.uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"factory-sim:{self.name}"))

    name = "device"

    def get(self, path: str) -> dict:
        path = path.rstrip("/") or "/"
        if path in ("/redfish", "/redfish/"):
            return {"v1": f"{ROOT}/"}
        with self.site.lock:
            body = session_resource(path) or self.resource(path)
        if body is None:
            raise HttpError(404, f"no resource at {path}")
        return body

    def resource(self, path: str) -> dict | None:
        raise NotImplementedError

    def post(self, path: str, body: dict) -> tuple[int, dict, dict]:
        raise HttpError(405, f"no action at {path}")
