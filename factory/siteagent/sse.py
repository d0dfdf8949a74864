"""Push from the devices: each device's EventService stream (server-sent events, DSP0266 §13.5).

Where a device offers ``ServerSentEventUri``, one thread per device holds the stream open,
resumes it with ``Last-Event-ID`` after a drop (with backoff), and hands each Event record to
the agent at once as a ``wire.Event`` (``classify``); a MetricReport on the stream goes to the
agent too. Where a device offers no stream, or it is down, ``live`` is False and the agent polls
that device for faults instead; the thread looks again and resubscribes when it comes back.
A stream counts as live only while it is heard from (data or a keep-alive comment) within
``idle_s``: a peer that died without closing the connection is not mistaken for a quiet one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping

import requests
from urllib3.exceptions import HTTPError

from factory import wire
from factory.siteagent.devices import Device, DeviceError, chip_of
from factory.wire import DeviceKind, EventKind

log = logging.getLogger("factory.siteagent.sse")
RETRY_MIN_S, RETRY_MAX_S = 0.5, 30.0
#: A stream silent this long is not live, and its read gives up (it is reopened, resumed by
#: Last-Event-ID): a dead peer is found. Services send a keep-alive well within it (DSP0266
#: leaves the period to them; ours every 15 s); the agent allows two report intervals if longer.
IDLE_S = 40.0
#: A stream that was open at least this long was up: reopen at once. One that dies sooner
#: backs off, so a service that accepts and drops at once is not hammered.
STABLE_S = 5.0
#: How often a device without a stream is asked again whether it has one.
RECHECK_S = 60.0
BAD = ("Warning", "Critical")


# --- classification (pure) ---------------------------------------------------------------


def _severity(record: Mapping[str, object]) -> str:
    for key in ("MessageSeverity", "Severity"):
        value = record.get(key)
        if isinstance(value, str) and value:
            return value
    message_id = str(record.get("MessageId", ""))
    for severity in ("Critical", "Warning", "OK"):
        if message_id.endswith(severity):
            return severity
    return "OK"


def _origin(record: Mapping[str, object]) -> str:
    origin = record.get("OriginOfCondition")
    if isinstance(origin, dict):
        origin = origin.get("@odata.id")
    return origin if isinstance(origin, str) else ""


def _segment_after(path: str, collection: str) -> str:
    return path.split(f"/{collection}/", 1)[1].split("/", 1)[0]


def classify(
    record: Mapping[str, object],
    source: str,
    kind: str,
    feed_of: Callable[[str], str | None] | None = None,
    chip_of: Callable[[str], int | None] | None = None,
) -> wire.Event | None:
    """The agent's event for one Redfish Event record, by what it is about
    (``OriginOfCondition``) and how bad (``MessageSeverity``); None for what needs no event
    (a return to OK, a test event, what the control plane's rules judge from telemetry).

    ``/LeakDetectors/`` Warning or Critical: a leak; ``/Ports/<p>``: link-down; ``/Memory/<m>``
    Critical: hbm-failure; ``/Processors/<n>`` Critical: chip-failure (chip n); a PDU's Mains
    or circuit Critical: feed-loss of that PowerDistribution (its feed by ``feed_of`` the
    origin where the agent knows the rack's feed names, else the unit's Id); a CDU's
    temperature or coolant Warning/Critical: coolant-excursion. A Warning on a port is a flap,
    below what kills a job: no event (the control plane judges flaps from telemetry).

    A chip's index is ``chip_of`` the origin (the Processor's, or the Memory's, place in its
    collection: the Ids' digits are the vendor's, from 0 or from 1); without it, or when it
    does not know, the event names no chip."""
    severity = _severity(record)
    if severity not in BAD:
        return None
    origin = _origin(record)
    message = str(record.get("Message") or record.get("MessageId") or "")
    stamp = str(record.get("EventTimestamp") or "")
    event = wire.Event(
        source=source, kind="", message=message[:500], timestamp=stamp, device_kind=kind
    )
    if "/LeakDetectors/" in origin or "/LeakDetection" in origin:
        event["kind"] = EventKind.LEAK
        return event
    if kind == DeviceKind.PDU or "/PowerEquipment/" in origin:
        if severity == "Critical" and re.search(r"/(Mains|Circuits|Branches|Feeders)(/|$)", origin):
            for collection in ("RackPDUs", "PowerShelves", "FloorPDUs", "Switchgear"):
                if f"/{collection}/" in origin:
                    event["kind"] = EventKind.FEED_LOSS
                    named = feed_of(origin) if feed_of is not None else None
                    event["feed"] = named or _segment_after(origin, collection)
                    return event
        return None
    if kind == DeviceKind.CDU or "/ThermalEquipment/" in origin:
        words = f"{origin} {record.get('MessageId', '')} {message}".lower()
        if any(w in words for w in ("temperature", "coolant", "sensors", "supply")):
            event["kind"] = EventKind.COOLANT_EXCURSION
            return event
        return None
    if severity != "Critical":
        return None
    if "/Ports/" in origin:
        event["kind"] = EventKind.LINK_DOWN
    elif "/Memory/" in origin:
        event["kind"] = EventKind.HBM_FAILURE
    elif "/Processors/" in origin:
        event["kind"] = EventKind.CHIP_FAILURE
    else:
        return None
    chip = chip_of(origin) if chip_of is not None else None
    if chip is not None:
        event["chip"] = chip
    return event


def events_of(
    payload: Mapping[str, object],
    source: str,
    kind: str,
    feed_of: Callable[[str], str | None] | None = None,
    chip_of: Callable[[str], int | None] | None = None,
) -> list[wire.Event]:
    """Every agent event of one Event resource (its ``Events`` records)."""
    records = payload.get("Events") or []
    found = []
    for record in records if isinstance(records, list) else []:
        if isinstance(record, dict):
            event = classify(record, source, kind, feed_of, chip_of)
            if event is not None:
                found.append(event)
    return found


def parse(lines: Iterator[str]) -> Iterator[tuple[str | None, str]]:
    """Server-sent events (``id``/``data`` fields, blank line ends one) as (id, data)."""
    event_id: str | None = None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield event_id, "\n".join(data)
            data = []
            continue
        if line.startswith(":"):
            continue  # a comment: keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "id":
            event_id = value


# --- the stream --------------------------------------------------------------------------


class EventStream:
    """One device's event stream, held by its own thread."""

    def __init__(
        self,
        device: Device,
        on_events: Callable[[list[wire.Event]], None],
        on_report: Callable[[Device, dict], None] | None = None,
        *,
        stop: threading.Event | None = None,
        recheck_s: float = RECHECK_S,
        idle_s: float = IDLE_S,
    ):
        self.device = device
        self.on_events = on_events
        self.on_report = on_report
        self.stop = stop or threading.Event()
        self.recheck_s = recheck_s
        #: Silence (no data, no keep-alive) after which the stream is not live; the read
        #: gives up after it too. The agent may change it (its report interval changed).
        self.idle_s = idle_s
        self.open = False  # a stream is connected now (it may still have gone quiet)
        self.heard_at = 0.0  # monotonic: the last bytes read from the open stream
        self.offered: bool | None = None  # the device has a stream (None: not asked yet)
        self.last_event_id: str | None = None
        self.received = 0
        self.connects = 0
        self.errors = 0  # unexpected failures the thread survived
        self._response: requests.Response | None = None
        self.thread: threading.Thread | None = None
        self._feed_of = lambda origin: _feed_of_device(device, origin)
        self._chip_of = lambda origin: chip_of(device, origin)

    @property
    def live(self) -> bool:
        """Open and heard from within ``idle_s``: events the device raises arrive now."""
        return self.open and time.monotonic() - self.heard_at < self.idle_s

    def start(self) -> EventStream:
        self.thread = threading.Thread(
            target=self.run, daemon=True, name=f"sse-{self.device.serial}"
        )
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        response = self._response
        if response is not None:
            # Closing the response from here would wait for the reader's buffer lock (until
            # the next byte comes); shutting the socket down ends the read at once.
            connection = getattr(response.raw, "_connection", None)
            sock = getattr(connection, "sock", None)
            with contextlib.suppress(OSError):  # a stream already gone
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)

    def join(self, timeout_s: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout_s)

    def uri(self) -> str | None:
        """The device's ``ServerSentEventUri``, or None when it offers none."""
        root = self.device.get(wire.REDFISH_ROOT)
        link = (root.get("EventService") or {}).get("@odata.id")
        if not link:
            return None
        service = self.device.get(link)
        if service.get("ServiceEnabled") is False:
            return None
        uri = service.get("ServerSentEventUri")
        return uri if isinstance(uri, str) and uri else None

    def run(self) -> None:
        """Hold the stream until stopped: whatever goes wrong is logged and retried, the
        thread never dies (polling stands in meanwhile)."""
        backoff = RETRY_MIN_S
        while not self.stop.is_set():
            try:
                uri = self.uri()
            except Exception as exc:  # a device's answer is not ours to trust
                if not isinstance(exc, DeviceError):
                    self.errors += 1
                    log.exception("%s: event service unreadable", self.device.serial)
                else:
                    log.info("%s: event service unreachable: %s", self.device.serial, exc)
                self.offered = self.offered or False
                self.stop.wait(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)
                continue
            self.offered = uri is not None
            if uri is None:
                self.stop.wait(self.recheck_s)
                continue
            try:
                if self._hold(uri) >= STABLE_S:
                    backoff = RETRY_MIN_S  # it was up a while: try again at once
            except DeviceError as exc:
                log.info("%s: event stream: %s", self.device.serial, exc)
            except Exception:  # survive, log, back off, go on
                self.errors += 1
                log.exception("%s: event stream failed", self.device.serial)
            finally:
                self.open = False
            self.stop.wait(backoff)
            backoff = min(backoff * 2, RETRY_MAX_S)

    def _hold(self, uri: str) -> float:
        """Open the stream and read it until it ends; how long it was open (0: never)."""
        headers = {"Accept": "text/event-stream"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        opened = time.monotonic()
        with self.device.slot():
            response = self.device.open_stream(uri, headers, self.idle_s)
            self._response = response
            try:
                if response.status_code != 200:
                    raise DeviceError(f"GET {uri} answered {response.status_code}")
                opened = self.heard_at = time.monotonic()
                self.open, self.connects = True, self.connects + 1
                log.info("%s: event stream open", self.device.serial)
                for event_id, data in parse(self._heard(_lines(response))):
                    if event_id is not None:
                        self.last_event_id = event_id
                    self._deliver(data)
                    if self.stop.is_set():
                        break
            except (OSError, ValueError, HTTPError, requests.RequestException) as exc:
                if not self.stop.is_set():
                    log.info("%s: event stream dropped: %s", self.device.serial, exc)
            finally:
                self.open = False
                self._response = None
                response.close()
        return time.monotonic() - opened

    def _heard(self, lines: Iterator[str]) -> Iterator[str]:
        """Every line read (a keep-alive comment too) is a sign of life."""
        for line in lines:
            self.heard_at = time.monotonic()
            yield line

    def _deliver(self, data: str) -> None:
        try:
            payload = json.loads(data)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        self.received += 1
        if "#MetricReport." in str(payload.get("@odata.type", "")):
            if self.on_report is not None:
                self.on_report(self.device, payload)
            return
        events = events_of(
            payload, self.device.serial, self.device.kind, self._feed_of, self._chip_of
        )
        if events:
            self.on_events(events)


def _feed_of_device(device: Device, origin: str) -> str | None:
    """The feed a PDU circuit belongs to, by the rack's feed plan the PDU poll found
    (``feed<TAB>mains URI``, a line each), matched on the PowerDistribution unit's URI."""
    plan = device.discovered.get("pdu-mains") or ""
    for line in plan.splitlines():
        feed, _, mains = line.partition("\t")
        unit = mains.split("/Mains/", 1)[0]
        if origin == unit or origin.startswith(f"{unit}/"):
            return feed
    return None


def _lines(response: requests.Response) -> Iterator[str]:
    """The stream's lines as they arrive (not when a read buffer fills)."""
    raw = response.raw
    raw.decode_content = True
    chunks: Iterator[bytes]
    if raw.chunked and raw.supports_chunked_reads():
        chunks = raw.read_chunked(65536)
    else:
        chunks = iter(lambda: raw.read1(65536), b"")
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r").decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")
