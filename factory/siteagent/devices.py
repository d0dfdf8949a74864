"""The site's devices as the agent reaches them: standard Redfish (DSP0266) over ``requests``.

A session (``POST SessionService/Sessions``, then ``X-Auth-Token``) where the device offers one,
renewed on a 401 and deleted on shutdown; Basic authentication where it does not. HTTPS is
verified against the site's CA bundle or a pinned certificate fingerprint; plain HTTP only for a
device listed with an ``http://`` URL. At most ``MAX_CONNECTIONS`` requests at a time to any one
device (BMCs are small computers).

``requests`` rather than DMTF's ``redfish`` client: that client logs in per client object, retries
on its own and cannot pin a certificate, and the agent needs one session per device shared by
its connections, the ETag of a read and the raw answer of a task monitor (202, Retry-After).
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from factory import wire
from factory.wire import OEM, FeedReading, ReportId, ReportKey

log = logging.getLogger("factory.siteagent.devices")
MAX_CONNECTIONS = 4
SYSTEM = wire.SYSTEM_PATH
SESSIONS_PATH = f"{wire.REDFISH_ROOT}/SessionService/Sessions"
SESSION_SERVICE_PATH = f"{wire.REDFISH_ROOT}/SessionService"
TOKEN_HEADER = "X-Auth-Token"
#: A login POST answered so: the device has no session service; Basic it is.
NO_SESSIONS = (404, 405, 501)
# Redfish MetricValues are strings; these metrics travel on as floats, the rest as integers.
FLOAT_METRICS = tuple(m.name for m in wire.CHIP_METRICS if not m.type.integral)
PIN_PREFIX = "sha256:"


class DeviceError(Exception):
    pass


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the port spelled out where the scheme implies it."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


@dataclass(frozen=True)
class TlsPolicy:
    """How a device's certificate is trusted: the site's CA bundle (a path), or a pin (the
    SHA-256 of the certificate's DER, ``sha256:<hex>``). Neither: the system's CAs."""

    ca: str | None = None
    pin: str | None = None

    @classmethod
    def of(cls, listed: Mapping[str, object] | None) -> TlsPolicy:
        """From a device listing's ``tls`` entry (``{"ca": path}`` or ``{"pin": "sha256:..."}``)."""
        listed = listed or {}
        unknown = set(listed) - {"ca", "pin"}
        if unknown:
            raise ValueError(f"tls: unknown keys {sorted(unknown)} (ca, pin)")
        ca, pin = listed.get("ca"), listed.get("pin")
        if pin is not None:
            pin = str(pin).lower()
            digest = pin.removeprefix(PIN_PREFIX).replace(":", "")
            if not pin.startswith(PIN_PREFIX) or len(digest) != 64:
                raise ValueError("tls.pin must be sha256: and 64 hex digits")
            int(digest, 16)
        return cls(ca=str(ca) if ca is not None else None, pin=pin)

    @property
    def digest(self) -> str | None:
        """The pin as urllib3 compares it (hex, no colons)."""
        return self.pin.removeprefix(PIN_PREFIX).replace(":", "") if self.pin else None


class _PinnedAdapter(HTTPAdapter):
    """Connections that accept exactly one certificate, compared on every handshake (the
    chain is not checked: a pin is the trust)."""

    def __init__(self, digest: str, **kwargs: Any):
        self.digest = digest
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_fingerprint"] = self.digest
        super().init_poolmanager(*args, **kwargs)


@dataclass
class Answer:
    """A device's answer as the agent reads it: status, JSON body ({} when none), headers."""

    status: int
    body: dict = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def etag(self) -> str | None:
        return self.headers.get("ETag") or self.body.get("@odata.etag")

    def retry_after(self) -> float | None:
        """Retry-After in seconds (delta-seconds or an HTTP date), None when absent."""
        value = self.headers.get("Retry-After")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())

    def message(self) -> str:
        """The Redfish error's message, or the status."""
        error = self.body.get("error") or {}
        extended = error.get("@Message.ExtendedInfo") or []
        text = error.get("message") or "; ".join(m.get("Message", "") for m in extended)
        return text or f"HTTP {self.status}"


class Device:
    """One Redfish service on the management network, with its session and its trust."""

    def __init__(
        self,
        kind: str,
        serial: str,
        url: str,
        username: str,
        password: str,
        timeout: float = 10.0,
        *,
        tls: TlsPolicy | Mapping[str, object] | None = None,
        **extra: object,
    ):
        self.kind = kind
        self.serial = serial
        self.url = url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self.tls = tls if isinstance(tls, TlsPolicy) else TlsPolicy.of(tls)
        self.extra = extra  # what the listing says beyond kind, serial, url: rack, position...
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._login_lock = threading.Lock()
        self.auth: str | None = None  # "session" or "basic" once logged in
        self.token: str | None = None
        self.session_uri: str | None = None
        self.logins = 0  # sessions created (a renewal is one more)
        #: Set by ``close``: no login after it, so work still in flight at shutdown cannot
        #: open a session nobody deletes.
        self.closed = False
        #: ``{Processor or Memory URI: chip index}``: a chip's index is its place in the
        #: Processors collection (a service may number its Ids from 1), found once.
        self.chip_positions: dict[str, int] | None = None
        self._chip_columns: dict[str, int] = {}  # MetricProperty -> chip index, as found
        #: URIs found on the service once (the system, the update service...), by name.
        self.discovered: dict[str, str] = {}
        self.http = self._http()

    def _http(self) -> requests.Session:
        http = requests.Session()
        http.trust_env = False  # a management network: no proxies, no netrc credentials
        adapter: HTTPAdapter
        if self.tls.digest:
            adapter = _PinnedAdapter(self.tls.digest, pool_maxsize=MAX_CONNECTIONS)
            http.verify = False  # the pin replaces the chain (checked on every handshake)
        else:
            adapter = HTTPAdapter(pool_maxsize=MAX_CONNECTIONS)
            http.verify = self.tls.ca or True
        http.mount("https://", adapter)
        http.mount("http://", HTTPAdapter(pool_maxsize=MAX_CONNECTIONS))
        http.headers.update({"Accept": "application/json", "OData-Version": "4.0"})
        return http

    def __repr__(self) -> str:
        return f"Device({self.kind} {self.serial} {self.url})"

    # --- authentication ------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        stream: bool = False,
        timeout: float | tuple[float, float | None] | None = None,
        files: Mapping[str, tuple[str | None, str | BinaryIO, str]] | None = None,
    ) -> requests.Response:
        """One request as it goes on the wire, authenticated as the device was logged in.
        ``files``: a multipart/form-data body instead of JSON (requests sets its boundary)."""
        sent = dict(headers or {})
        if body is not None and files is None:
            sent.setdefault("Content-Type", "application/json")
        basic = None
        if auth:
            if self.auth == "session" and self.token:
                sent[TOKEN_HEADER] = self.token
            elif self.auth == "basic":
                basic = (self.username, self.password)
        url = self.url_of(path)
        try:
            return self.http.request(
                method,
                url,
                data=None if body is None else json.dumps(body).encode(),
                files=files,
                headers=sent,
                auth=basic,
                stream=stream,
                timeout=timeout or self.timeout,
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            raise DeviceError(
                f"{self.serial}: TLS to {self.url} refused (certificate not trusted: "
                f"{'pin ' + str(self.tls.pin) if self.tls.pin else self.tls.ca or 'system CAs'})"
                f": {exc}"
            ) from exc
        except requests.RequestException as exc:
            raise DeviceError(f"{self.serial}: {method} {path}: {exc}") from exc

    def url_of(self, path: str) -> str:
        """Where a path the device named (a task's ``Location``, a session's, an
        ``@odata.id``) is. An absolute URL only on the device's own scheme, host and port: a
        device must not send the agent, and its credentials, anywhere else."""
        if "://" not in path:
            return f"{self.url}{path}"
        if _origin(path) != _origin(self.url):
            raise DeviceError(f"{self.serial}: refused to follow {path[:200]} off {self.url}")
        return path

    def login(self) -> None:
        """A session where the device has one (``POST Sessions``: 201 and ``X-Auth-Token``);
        Basic when it answers that it has none (404, 405, 501), or refuses the POST and says
        its session service is disabled."""
        response = self._send(
            "POST",
            SESSIONS_PATH,
            body={"UserName": self.username, "Password": self.password},
            auth=False,
        )
        token = response.headers.get(TOKEN_HEADER)
        if response.status_code in (200, 201) and token:
            self.token, self.auth = token, "session"
            self.session_uri = response.headers.get("Location") or _json(response).get("@odata.id")
            self.logins += 1
            return
        if response.status_code in NO_SESSIONS:
            self.token, self.auth, self.session_uri = None, "basic", None
            return
        # Some services refuse an unauthenticated POST outright; ask whether sessions are on.
        probe = self._send("GET", SESSION_SERVICE_PATH, auth=False, headers=_basic_header(self))
        if probe.status_code == 200 and _json(probe).get("ServiceEnabled") is False:
            self.token, self.auth, self.session_uri = None, "basic", None
            return
        raise DeviceError(
            f"{self.serial}: login refused: {response.status_code} "
            f"{Answer(response.status_code, _json(response)).message()}"
        )

    def _ensure_login(self, stale_token: str | None = None) -> None:
        """Log in once for every thread that needs it; renew only the token that failed."""
        with self._login_lock:
            if self.closed:
                raise DeviceError(f"{self.serial}: closed (the agent is stopping)")
            if self.auth is None or (stale_token is not None and self.token == stale_token):
                self.login()

    def logout(self, *, closing: bool = False) -> None:
        """Delete the session (an open session holds one of the BMC's few session slots)."""
        with self._login_lock:
            uri, token = self.session_uri, self.token
            self.auth, self.token, self.session_uri = None, None, None
            self.closed = self.closed or closing
        if uri and token:
            try:
                self.http.delete(
                    self.url_of(uri),
                    headers={TOKEN_HEADER: token},
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except (requests.RequestException, DeviceError) as exc:
                log.info("%s: session not deleted: %s", self.serial, exc)

    def close(self) -> None:
        """Log out for good: a request still in flight finds no session and may not open one."""
        self.logout(closing=True)
        self.http.close()

    # --- requests ------------------------------------------------------------------------

    @contextmanager
    def slot(self) -> Iterator[None]:
        """One of the device's MAX_CONNECTIONS (a held event stream counts as one)."""
        with self._slots:
            yield

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Any answer (the caller reads the status); a 401 renews the session once."""
        return self._renewing(lambda: self._send(method, path, body=body, headers=headers))

    def upload(
        self,
        path: str,
        parameters: Mapping[str, object],
        filename: str,
        image: BinaryIO,
        timeout: float,
    ) -> Answer:
        """A push update to ``MultipartHttpPushUri`` (DSP0266): the ``UpdateParameters`` JSON
        part and the image as the ``UpdateFile`` part, the form DMTF's redfish_utilities
        sends. The BMC flashes the bytes sent, so what the agent verified is what runs."""

        def send() -> requests.Response:
            image.seek(0)  # a resend after a renewed session sends the whole image again
            form: dict[str, tuple[str | None, str | BinaryIO, str]] = {
                "UpdateParameters": (None, json.dumps(dict(parameters)), "application/json"),
                "UpdateFile": (filename, image, "application/octet-stream"),
            }
            return self._send("POST", path, files=form, timeout=timeout)

        return self._renewing(send)

    def _renewing(self, send: Callable[[], requests.Response]) -> Answer:
        """``send`` in one of the device's slots, logged in; a 401 renews the session once."""
        with self.slot():
            self._ensure_login()
            token = self.token
            response = send()
            if response.status_code == 401 and self.auth == "session":
                self._ensure_login(stale_token=token)
                response = send()
        return Answer(response.status_code, _json(response), dict(response.headers))

    def get_answer(self, path: str) -> Answer:
        answer = self.request("GET", path)
        if answer.status != 200:
            raise DeviceError(f"{self.serial}: GET {path} answered {answer.status}")
        return answer

    def get(self, path: str) -> dict:
        return self.get_answer(path).body

    def post(self, path: str, body: dict) -> tuple[int, dict, dict]:
        answer = self.request("POST", path, body)
        return answer.status, answer.body, dict(answer.headers)

    def patch(self, path: str, body: dict) -> Answer:
        """PATCH with ``If-Match`` when the resource carries an ETag; on a 412 (changed since
        read) read again and try once more."""
        answer = Answer(0)
        for _ in range(2):
            etag = self.get_answer(path).etag
            answer = self.request("PATCH", path, body, {"If-Match": etag} if etag else None)
            if answer.status != 412:
                break
        return answer

    def open_stream(
        self, path: str, headers: Mapping[str, str], idle_s: float | None = None
    ) -> requests.Response:
        """A long-lived GET (server-sent events) that fails after ``idle_s`` of silence; the
        caller closes it. It holds no slot: the caller does, for as long as it is open."""
        self._ensure_login()
        token = self.token
        timeout = (self.timeout, idle_s)
        response = self._send("GET", path, headers=headers, stream=True, timeout=timeout)
        if response.status_code == 401 and self.auth == "session":
            response.close()
            self._ensure_login(stale_token=token)
            response = self._send("GET", path, headers=headers, stream=True, timeout=timeout)
        return response


def _json(response: requests.Response) -> dict:
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _basic_header(device: Device) -> dict[str, str]:
    pair = base64.b64encode(f"{device.username}:{device.password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _report(report_id: ReportId, source: str, oem: dict, stamp: str | None = None) -> dict:
    return {
        "@odata.type": wire.METRIC_REPORT_TYPE,
        "Id": report_id.value,
        "Timestamp": stamp or now_iso(),
        "MetricValues": [],
        "Oem": {OEM: {ReportKey.SOURCE: source, **oem}},
    }


def _number(text: str) -> int | float:
    """Redfish MetricValue is a string: counters as integers, the rest as floats."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _member_uri(path: str, collection: str) -> str | None:
    """The collection member a path is at or below (``.../Processors/Chip3/Ports/1`` ->
    ``.../Processors/Chip3``), or None when it is under no such collection."""
    head, sep, tail = path.partition(f"/{collection}/")
    member = tail.split("/", 1)[0].split("#", 1)[0]
    return f"{head}{sep}{member}" if sep and member else None


def _system_link(device: Device, name: str) -> str | None:
    root = device.get(wire.REDFISH_ROOT)
    systems = (root.get("Systems") or {}).get("@odata.id")
    members = (device.get(systems).get("Members") or []) if systems else []
    system = device.get(members[0]["@odata.id"]) if members else {}
    link = system.get(name)
    return link.get("@odata.id") if isinstance(link, dict) else None


def chip_positions(device: Device) -> dict[str, int]:
    """``{Processor or Memory URI: chip index}``: each Processor's place in the system's
    Processors collection, each Memory's in its Memory collection (read once per device). The
    digits of an Id are the vendor's: one BMC numbers from 0, another from 1."""
    if device.chip_positions is None:
        found: dict[str, int] = {}
        for name in ("Processors", "Memory"):
            collection = _system_link(device, name)
            for index, uri in enumerate(_members(device, collection) if collection else []):
                found[uri.rstrip("/")] = index
        device.chip_positions = found
    return device.chip_positions


def chip_of(device: Device, uri: str) -> int | None:
    """The chip a Processor or Memory (or a path below one) is, by its collection position;
    None when the device's collections do not list it (or cannot be read now)."""
    for collection in ("Processors", "Memory"):
        member = _member_uri(uri, collection)
        if member is not None:
            try:
                return chip_positions(device).get(member)
            except DeviceError as exc:
                log.info("%s: chip positions unknown: %s", device.serial, exc)
                return None
    return None


def _columns(device: Device | None) -> Callable[[str], int | None]:
    """A MetricProperty's chip: its Processor's place in the device's collection (remembered
    per property), else, when the device's collections cannot be read, the Id's digits."""
    positions: dict[str, int] | None = None
    if device is not None:
        try:
            positions = chip_positions(device)
        except DeviceError as exc:
            log.info("%s: chip positions unknown: %s", device.serial, exc)
    if device is None or positions is None:
        return wire.chip_index
    known = device._chip_columns

    def column(metric_property: str) -> int | None:
        found = known.get(metric_property)
        if found is None:
            member = _member_uri(metric_property, "Processors")
            found = positions.get(member) if member else None
            if found is not None:
                known[metric_property] = found
        return found

    return column


def chip_report(source: str, report: Mapping[str, Any], device: Device | None = None) -> dict:
    """A BMC's per-chip MetricReport (polled, or pushed on its event stream), turned into one
    list per metric, a chip's values at its place in the device's Processors collection."""
    columns: dict[str, list] = {}
    column_of = _columns(device)
    for value in report.get("MetricValues", []):
        index = column_of(value.get("MetricProperty", ""))
        if index is None:
            continue  # a chip the device does not list: nowhere to put it
        column = columns.setdefault(value["MetricId"], [])
        if len(column) <= index:
            column.extend([0] * (index + 1 - len(column)))
        column[index] = _number(value["MetricValue"])
    for metric in FLOAT_METRICS:
        if metric in columns:
            columns[metric] = [float(v) for v in columns[metric]]
    return _report(ReportId.CHIPS, source, {ReportKey.CHIPS: columns}, report.get("Timestamp"))


def chip_report_uri(device: Device) -> str:
    """The chip MetricReport's URI: the TelemetryService's member of that Id, found once."""
    found = device.discovered.get("chip-report")
    if found is None:
        found = wire.CHIP_REPORT_PATH
        root = device.get(wire.REDFISH_ROOT)
        telemetry = (root.get("TelemetryService") or {}).get("@odata.id")
        reports = (
            (device.get(telemetry).get("MetricReports") or {}).get("@odata.id")
            if telemetry
            else None
        )
        for member in device.get(reports).get("Members", []) if reports else []:
            if member["@odata.id"].rstrip("/").rsplit("/", 1)[-1] == ReportId.CHIPS:
                found = member["@odata.id"]
        device.discovered["chip-report"] = found
    return found


def poll_bmc(device: Device) -> dict:
    """The BMC's per-chip MetricReport, turned into one list per metric."""
    return chip_report(device.serial, device.get(chip_report_uri(device)), device)


def _reading(excerpt: object) -> float | None:
    """A sensor excerpt's ``Reading`` (``{"Reading": 12.5, "DataSourceUri": ...}``), if a number."""
    value = excerpt.get("Reading") if isinstance(excerpt, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _members(device: Device, path: str) -> list[str]:
    return [m["@odata.id"] for m in device.get(path).get("Members", [])]


def _link(body: Mapping[str, Any], name: str) -> str:
    """A navigation link the standard requires here; a device without it is misconfigured."""
    target = (body.get(name) or {}).get("@odata.id") if isinstance(body.get(name), dict) else None
    if not target:
        raise DeviceError(f"{body.get('@odata.id', '?')} has no {name}")
    return str(target)


def _discovered(device: Device, key: str, discover: Callable[[], list[str]]) -> list[str]:
    """Member URIs found once per device (``Device.discovered`` holds them a line each)."""
    found = device.discovered.get(key)
    if found is None:
        found = device.discovered[key] = "\n".join(discover())
    return found.split("\n") if found else []


def _feed_name(unit: Mapping[str, Any], index: int, count: int, listed: list[str]) -> str:
    """Which of the rack's feeds a PowerDistribution is: the listing names the feeds; a device
    says which by its ``UserLabel``, ``Id`` or ``Name``, or failing those by its place among
    as many units as there are feeds."""
    named = [str(unit[k]) for k in ("UserLabel", "Id", "Name") if unit.get(k)]
    for name in named:
        if not listed or name in listed:
            return name
    if len(listed) == count:
        return sorted(listed)[index]
    return named[0] if named else str(index + 1)


def _circuit_live(circuit: Mapping[str, Any]) -> bool:
    """A mains circuit is live when it says it is On; without ``PowerState``, when any of its
    voltages reads above zero."""
    state = circuit.get("PowerState")
    if state is not None:
        return state == "On"
    excerpts = [circuit.get("Voltage"), *(circuit.get("PolyPhaseVoltage") or {}).values()]
    return any((_reading(v) or 0.0) > 0 for v in excerpts)


def _circuit_watts(circuit: Mapping[str, Any]) -> float:
    total = _reading(circuit.get("PowerWatts"))
    if total is None:  # some PDUs give only the lines
        lines = [_reading(v) for v in (circuit.get("PolyPhasePowerWatts") or {}).values()]
        total = sum(v for v in lines if v is not None)
    return total


def _pdu_mains(device: Device) -> list[str]:
    """``feed<TAB>mains circuit URI`` for each Mains circuit of each RackPDU, from the
    collections (the members' names are the device's own)."""
    root = device.get(wire.REDFISH_ROOT)
    equipment = device.get(_link(root, "PowerEquipment")) if root.get("PowerEquipment") else {}
    units_path = (equipment.get("RackPDUs") or {}).get("@odata.id") or wire.RACK_PDUS_PATH
    units = _members(device, units_path)
    named = device.extra.get("feeds")  # the listing's feed names for this rack
    listed = [str(f) for f in named] if isinstance(named, list) else []
    plan = []
    for index, path in enumerate(units):
        unit = device.get(path)
        feed = _feed_name(unit, index, len(units), listed)
        plan += [f"{feed}\t{mains}" for mains in _members(device, _link(unit, "Mains"))]
    return plan


def poll_pdu(device: Device) -> dict:
    """Each feed's power and whether it is live, from the standard Mains circuits of the rack's
    PowerDistribution units (a feed with several mains: their sum, live if any is)."""
    feeds: dict[str, dict] = {}
    try:
        for line in _discovered(device, "pdu-mains", lambda: _pdu_mains(device)):
            feed, path = line.split("\t", 1)
            mains = device.get(path)
            reading = feeds.setdefault(feed, {FeedReading.POWER_W: 0.0, FeedReading.UP: False})
            reading[FeedReading.POWER_W] += _circuit_watts(mains)
            reading[FeedReading.UP] = reading[FeedReading.UP] or _circuit_live(mains)
    except (DeviceError, KeyError, ValueError, TypeError):
        device.discovered.pop("pdu-mains", None)  # a changed device: look again next time
        raise
    return _report(ReportId.PDU, device.serial, {ReportKey.FEEDS: feeds})


def _cdu_secondaries(device: Device) -> list[str]:
    """The secondary (IT-side) coolant connectors of every CoolingUnit of the device."""
    root = device.get(wire.REDFISH_ROOT)
    thermal = device.get(_link(root, "ThermalEquipment"))
    connectors = []
    for unit_path in _members(device, _link(thermal, "CDUs")):
        unit = device.get(unit_path)
        connectors += _members(device, _link(unit, "SecondaryCoolantConnectors"))
    return connectors


def _heat_w(connector: Mapping[str, Any], supply: float) -> float | None:
    """``HeatRemovedkW``; failing that, flow × density × c_p × (return − supply) with the
    connector's own ``Coolant`` figures; else unknown."""
    heat_kw = _reading(connector.get("HeatRemovedkW"))
    if heat_kw is not None:
        return heat_kw * 1000
    coolant = connector.get("Coolant") or {}
    flow = _reading(connector.get("FlowLitersPerMinute"))
    back = _reading(connector.get("ReturnTemperatureCelsius"))
    cp, density = coolant.get("SpecificHeatkJoulesPerKgK"), coolant.get("DensityKgPerCubicMeter")
    if flow is None or back is None or not cp or not density:
        return None
    return flow / 60 / 1000 * float(density) * float(cp) * 1000 * (back - supply)


def poll_cdu(device: Device) -> dict:
    """The coolant the servers get: the warmest ``SupplyTemperatureCelsius`` of the CDU's
    secondary connectors, and the heat they carry away (``HeatRemovedkW``, summed)."""
    supplies: list[float] = []
    heats: list[float | None] = []
    try:
        for path in _discovered(device, "cdu-secondary", lambda: _cdu_secondaries(device)):
            connector = device.get(path)
            supply = _reading(connector.get("SupplyTemperatureCelsius"))
            if supply is None:
                continue
            supplies.append(supply)
            heats.append(_heat_w(connector, supply))
    except (DeviceError, KeyError, ValueError, TypeError):
        device.discovered.pop("cdu-secondary", None)
        raise
    if not supplies:
        device.discovered.pop("cdu-secondary", None)
        raise DeviceError(f"{device.serial}: no secondary coolant supply temperature")
    known = [h for h in heats if h is not None]
    heat = round(sum(known), 1) if known and len(known) == len(heats) else None
    return _report(
        ReportId.CDU,
        device.serial,
        {ReportKey.SUPPLY_TEMPERATURE: max(supplies), ReportKey.HEAT_LOAD: heat},
    )


POLLERS: dict[str, Callable[[Device], dict]] = {
    wire.DeviceKind.BMC: poll_bmc,
    wire.DeviceKind.PDU: poll_pdu,
    wire.DeviceKind.CDU: poll_cdu,
}
