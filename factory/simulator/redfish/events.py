"""The EventService (DSP0266 "Eventing"): push subscriptions, server-sent events, test events,
and periodic MetricReports.

Every device has an ``EventBus``. The site tells it of each fault on this device as it is
recorded (``Site.listeners``, under the site lock): the fault becomes an Event with a standard
ResourceEvent message and is queued to each subscriber, never sent under the lock.

- Push: ``POST Subscriptions`` ``{Destination, Protocol: Redfish, ...}`` -> 201 + ``Location``;
  each subscription has its own sender thread that POSTs each Event to its Destination, retried
  ``DeliveryRetryAttempts`` times ``DeliveryRetryIntervalSeconds`` apart; after that the
  subscription is terminated (DeliveryRetryPolicy ``TerminateAfterRetries``).
- SSE (flavours with ``sse``): ``GET ServerSentEventUri`` streams ``text/event-stream``, each
  payload as ``id: N`` + ``data: {json}``, a keep-alive comment every ``KEEPALIVE_S``;
  ``$filter`` on EventFormatType, RegistryPrefix and MessageId; ``Last-Event-ID`` replays the
  ring buffer. An open stream is an EventDestination (SubscriptionType ``SSE``) until it closes;
  deleting that EventDestination ends the stream.
- MetricReports: where the device has a TelemetryService (BMCs), its per-chip report is sent as
  a MetricReport payload every ``Schedule.RecurrenceInterval`` of its MetricReportDefinition,
  only while someone asked for MetricReports.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import re
import threading
import time
import urllib.request
import weakref
from collections import deque
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from factory.simulator.faults import Fault
from factory.simulator.redfish.common import (
    REPORT_ID,
    ROOT,
    SERVICES,
    HttpError,
    Reply,
    Stream,
    Tree,
    link,
    now_iso,
    resource,
    status,
)
from factory.simulator.redfish.management import default_origin
from factory.simulator.redfish.registries import REGISTRIES, fault_message

log = logging.getLogger("factory.simulator.events")

EVENT_SERVICE = f"{ROOT}/EventService"
SUBSCRIPTIONS = f"{EVENT_SERVICE}/Subscriptions"
SSE_URI = f"{EVENT_SERVICE}/SSE"
SUBMIT_TEST_EVENT = f"{EVENT_SERVICE}/Actions/EventService.SubmitTestEvent"
SUBMIT_TEST_EVENT_INFO = f"{EVENT_SERVICE}/SubmitTestEventActionInfo"
TELEMETRY = f"{ROOT}/TelemetryService"
DEFINITIONS = f"{TELEMETRY}/MetricReportDefinitions"
DEFINITION = f"{DEFINITIONS}/{REPORT_ID}"

RING_SIZE = 256
#: MetricReports replayed after a ``Last-Event-ID``: a report is every chip's sample (hundreds
#: of KB on a large server), and the newest few say all the older ones did.
REPORT_RING_SIZE = 8
KEEPALIVE_S = 15.0
WAKE_S = 0.5  # how often an idle stream looks whether its EventDestination was deleted
DELIVERY_RETRY_ATTEMPTS = 3
DELIVERY_RETRY_INTERVAL_S = 2
DELIVERY_TIMEOUT_S = 5.0
DEFAULT_REPORT_INTERVAL_S = 10
MAX_SUBSCRIPTIONS = 64
EVENT, METRIC_REPORT = "Event", "MetricReport"
EVENT_TYPES = ("StatusChange", "ResourceUpdated", "ResourceAdded", "ResourceRemoved", "Alert")

#: The request an SSE GET came with: its query string (``$filter``) and headers
#: (``Last-Event-ID``, ``Accept``). The server sets it around the GET of ``ServerSentEventUri``.
SSE_REQUEST: ContextVar[tuple[str, Mapping[str, str]] | None] = ContextVar(
    "sse_request", default=None
)


def origin_of(tree: Tree, fault: Fault) -> str:
    """The resource the fault is on: the tree's ``origin_of`` where it has one, else the
    device's system or equipment (as its event log says), else the service root."""
    find = getattr(tree, "origin_of", None)
    found = find(fault) if find is not None else None
    return found or default_origin(tree) or ROOT


def fault_record(tree: Tree, fault: Fault) -> dict:
    """A fault as an Event record's message about its ``OriginOfCondition`` (the registry's
    ``fault_message``: the same words as the event log's entry)."""
    origin = origin_of(tree, fault)
    record = fault_message(fault, origin)
    record["OriginOfCondition"] = link(origin)
    return record


def fault_oem(fault: Fault) -> dict:
    """What the fault was, for an agent that maps events back to its own kinds."""
    oem: dict[str, object] = {"Kind": fault.kind, "DurationSeconds": fault.duration_s}
    fields = (
        ("Chip", fault.chip),
        ("Link", fault.link),
        ("Feed", fault.feed),
        ("Tray", fault.tray),
    )
    for key, value in fields:
        if value is not None:
            oem[key] = value
    return oem


@dataclass
class Published:
    """One payload sent: an Event or a MetricReport, numbered per device."""

    id: int
    format: str
    payload: dict  # without Context: each subscriber's own is added as it is sent
    registries: frozenset[str] = frozenset()  # RegistryPrefixes of its messages
    message_ids: frozenset[str] = frozenset()

    def for_subscriber(self, context: str) -> dict:
        return {**self.payload, "Context": context} if context else dict(self.payload)

    def sse(self, context: str) -> bytes:
        data = json.dumps(self.for_subscriber(context), separators=(",", ":"))
        return f"id: {self.id}\ndata: {data}\n\n".encode()


@dataclass
class Filter:
    """What a subscriber wants: empty sets take everything."""

    formats: frozenset[str] = frozenset()
    registries: frozenset[str] = frozenset()
    message_ids: frozenset[str] = frozenset()

    def wants(self, item: Published) -> bool:
        if self.formats and item.format not in self.formats:
            return False
        if item.format == EVENT:
            if self.registries and not (self.registries & item.registries):
                return False
            if self.message_ids and not (self.message_ids & item.message_ids):
                return False
        return True


_CLAUSE = re.compile(r"^\s*(\w+)\s+eq\s+'([^']*)'\s*$")
_FILTERABLE = {"EventFormatType": "formats", "RegistryPrefix": "registries", "MessageId": "ids"}


def parse_filter(text: str) -> Filter:
    """``$filter`` of an SSE stream (DSP0266 "Server-sent events"): ``Prop eq 'v'`` clauses
    joined by ``or`` (any of the values) and ``and`` (every property)."""
    values: dict[str, set[str]] = {"formats": set(), "registries": set(), "ids": set()}
    for clause in re.split(r"\s+(?:and|or)\s+", text.strip().strip("()")):
        match = _CLAUSE.match(clause.strip("() "))
        if match is None or match.group(1) not in _FILTERABLE:
            raise HttpError(
                400,
                f"$filter {text!r}: only EventFormatType, RegistryPrefix and MessageId "
                "with eq are supported",
                "QueryParameterValueFormatError",
            )
        values[_FILTERABLE[match.group(1)]].add(match.group(2))
    bad = values["formats"] - {EVENT, METRIC_REPORT}
    if bad:
        raise HttpError(
            400,
            f"EventFormatType {sorted(bad)} is not Event or MetricReport",
            "PropertyValueNotInList",
        )
    return Filter(
        frozenset(values["formats"]), frozenset(values["registries"]), frozenset(values["ids"])
    )


@dataclass
class Subscription:
    """An EventDestination: a push destination, or an open SSE stream."""

    id: str
    filter: Filter
    context: str = ""
    destination: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    sse: bool = False
    event_types: list[str] = field(default_factory=list)
    resource_types: list[str] = field(default_factory=list)
    outbox: queue.SimpleQueue[Published | None] = field(default_factory=queue.SimpleQueue)
    closed: threading.Event = field(default_factory=threading.Event)

    @property
    def format(self) -> str:
        return METRIC_REPORT if self.filter.formats == {METRIC_REPORT} else EVENT

    def body(self) -> dict:
        body = resource(
            f"{SUBSCRIPTIONS}/{self.id}",
            "EventDestination.v1_16_0.EventDestination",
            self.id,
            "SSE stream" if self.sse else f"Subscription {self.id}",
            Context=self.context,
            Protocol="Redfish",
            SubscriptionType="SSE" if self.sse else "RedfishEvent",
            EventFormatType=self.format,
            DeliveryRetryPolicy="TerminateAfterRetries",
            # DSP0266: HttpHeaders carry secrets; a GET shows none of them.
            HttpHeaders=[],
            Status=status(),
        )
        if not self.sse:
            body["Destination"] = self.destination
        if self.filter.registries:
            body["RegistryPrefixes"] = sorted(self.filter.registries)
        if self.filter.message_ids:
            body["MessageIds"] = sorted(self.filter.message_ids)
        if self.event_types:
            body["EventTypes"] = self.event_types
        if self.resource_types:
            body["ResourceTypes"] = self.resource_types
        return body


class EventBus:
    """One device's events: numbering, the replay ring, subscribers, senders, reports."""

    def __init__(self, tree: Tree):
        self.tree = tree
        self.lock = threading.Lock()
        self.ring: deque[Published] = deque(maxlen=RING_SIZE)  # Events
        self.report_ring: deque[Published] = deque(maxlen=REPORT_RING_SIZE)
        self.next_id = 1
        self.subscriptions: dict[str, Subscription] = {}
        self.ids = itertools.count(1)
        self.report_interval_s: float = DEFAULT_REPORT_INTERVAL_S
        self.reports_wake = threading.Event()
        self.reports_running = False
        self.delivered = 0  # push deliveries that succeeded (tests, demos)

    # --- publishing --------------------------------------------------------------------------

    def publish(
        self, fmt: str, payload: dict, registries: frozenset[str], message_ids: frozenset[str]
    ) -> Published:
        """Number the payload, keep it for replay, queue it to each subscriber that wants it.
        Never blocks: callers hold the site lock."""
        with self.lock:
            item = Published(self.next_id, fmt, payload, registries, message_ids)
            self.next_id += 1
            if fmt == EVENT:
                item.payload["Id"] = str(item.id)
                for record in item.payload.get("Events", []):
                    record.setdefault("EventId", str(item.id))
            (self.ring if fmt == EVENT else self.report_ring).append(item)
            for sub in self.subscriptions.values():
                if sub.filter.wants(item):
                    sub.outbox.put(item)
        return item

    def event(self, records: list[dict], name: str = "Event") -> Published:
        payload = {
            "@odata.type": "#Event.v1_13_0.Event",
            "Id": "",
            "Name": name,
            "Events": [{"MemberId": str(i), **r} for i, r in enumerate(records)],
        }
        prefixes = frozenset(r["MessageId"].split(".", 1)[0] for r in records)
        ids = frozenset(r["MessageId"] for r in records)
        return self.publish(EVENT, payload, prefixes, ids)

    def on_fault(self, fault: Fault) -> None:
        """``Site.listeners``: a fault on this device becomes an Event (site lock held)."""
        if fault.target != self.tree.name:
            return
        record = fault_record(self.tree, fault)
        record.update(
            EventType="Alert",
            EventTimestamp=now_iso(),
            Oem={self.tree.flavour.oem: fault_oem(fault)},
        )
        self.event([record], "Fault event")

    # --- subscribers -------------------------------------------------------------------------

    def _register(self, sub: Subscription) -> None:
        """Under ``self.lock``."""
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise HttpError(
                409, f"at most {MAX_SUBSCRIPTIONS} subscriptions", "EventSubscriptionLimitExceeded"
            )
        self.subscriptions[sub.id] = sub

    def add(self, sub: Subscription) -> Subscription:
        with self.lock:
            self._register(sub)
        if not sub.sse:
            threading.Thread(target=self._send_loop, args=(sub,), daemon=True).start()
        if METRIC_REPORT in sub.filter.formats or not sub.filter.formats:
            self._ensure_reports()
        return sub

    def remove(self, sub_id: str) -> Subscription | None:
        with self.lock:
            sub = self.subscriptions.pop(sub_id, None)
        if sub is not None:
            sub.closed.set()
            sub.outbox.put(None)
            self.reports_wake.set()  # the report loop stops when nobody wants reports
        return sub

    def new_id(self) -> str:
        return str(next(self.ids))

    def open_stream(self, flt: Filter, last_event_id: int | None) -> Stream:
        """An SSE stream: an EventDestination while it is open; first the ring's payloads
        after ``last_event_id`` (in order, none twice), then live ones."""
        sub = Subscription(self.new_id(), flt, sse=True)
        with self.lock:  # one step: nothing published falls between the replay and the queue
            backlog = sorted(
                (
                    p
                    for p in (*self.ring, *self.report_ring)
                    if last_event_id is not None and p.id > last_event_id and flt.wants(p)
                ),
                key=lambda p: p.id,
            )
            self._register(sub)
        if METRIC_REPORT in flt.formats or not flt.formats:
            self._ensure_reports()

        def chunks() -> Iterator[bytes]:
            yield b": stream open\n\n"
            for old in backlog:
                yield old.sse(sub.context)
            last_write = time.monotonic()
            while not sub.closed.is_set():
                try:
                    item = sub.outbox.get(timeout=WAKE_S)
                except queue.Empty:
                    if time.monotonic() - last_write >= KEEPALIVE_S:
                        last_write = time.monotonic()
                        yield b": keep-alive\n\n"
                    continue
                if item is None:
                    return
                last_write = time.monotonic()
                yield item.sse(sub.context)

        def close() -> None:
            self.remove(sub.id)

        stream = Stream(chunks=chunks(), close=close)
        # A stream made and dropped unread (HEAD, a 405 check) must not stay subscribed.
        weakref.finalize(stream, self.remove, sub.id)
        return stream

    # --- push delivery -----------------------------------------------------------------------

    def _send_loop(self, sub: Subscription) -> None:
        while not sub.closed.is_set():
            item = sub.outbox.get()
            if item is None:
                return
            if not self._deliver(sub, item):
                log.warning(
                    "subscription %s: %s unreachable after %d retries; terminated",
                    sub.id,
                    sub.destination,
                    DELIVERY_RETRY_ATTEMPTS,
                )
                self.remove(sub.id)
                return

    def _deliver(self, sub: Subscription, item: Published) -> bool:
        data = json.dumps(item.for_subscriber(sub.context)).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", **sub.headers}
        for attempt in range(1 + DELIVERY_RETRY_ATTEMPTS):
            if sub.closed.is_set():
                return True
            if attempt:
                sub.closed.wait(DELIVERY_RETRY_INTERVAL_S)
            request = urllib.request.Request(sub.destination, data, headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT_S) as answer:
                    if answer.status < 300:
                        self.delivered += 1
                        return True
            except OSError as exc:
                log.info("delivery to %s failed: %s", sub.destination, exc)
        return False

    # --- metric reports ----------------------------------------------------------------------

    def has_reports(self) -> bool:
        return callable(getattr(self.tree, "metric_report", None))

    def _wants_reports(self) -> bool:
        """Under ``self.lock``: does any subscriber take MetricReports?"""
        return any(
            not s.filter.formats or METRIC_REPORT in s.filter.formats
            for s in self.subscriptions.values()
        )

    def _ensure_reports(self) -> None:
        if not self.has_reports() or not self.tree.flavour.sse:
            return
        with self.lock:
            if self.reports_running:
                self.reports_wake.set()
                return
            self.reports_running = True
        threading.Thread(target=self._report_loop, daemon=True).start()

    def _report_loop(self) -> None:
        """Every interval while anyone asked for MetricReports; it stops when none does."""
        next_at = time.monotonic() + self.report_interval_s
        while True:
            self.reports_wake.clear()
            woke = self.reports_wake.wait(max(0.0, next_at - time.monotonic()))
            with self.lock:
                if not self._wants_reports():
                    self.reports_running = False
                    return
            if woke and time.monotonic() < next_at:
                # The interval changed, or someone new asked: count from now.
                next_at = min(next_at, time.monotonic() + self.report_interval_s)
                continue
            self.publish_report()
            next_at = time.monotonic() + self.report_interval_s

    def publish_report(self) -> Published:
        make = getattr(self.tree, "metric_report", None)
        assert make is not None, "only trees with a TelemetryService publish reports"
        with self.tree.site.lock:
            report = make(f"{TELEMETRY}/MetricReports/{REPORT_ID}")
        report["MetricReportDefinition"] = link(DEFINITION)
        return self.publish(METRIC_REPORT, report, frozenset(), frozenset())


def bus(tree: Tree) -> EventBus:
    found = tree.extensions.get("events")
    if not isinstance(found, EventBus):
        found = tree.extensions["events"] = EventBus(tree)
    return found


# --- parsing what subscribers ask -------------------------------------------------------------


def _strings(body: dict, key: str, allowed: frozenset[str] | None = None) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HttpError(400, f"{key} must be a list of strings", "PropertyValueTypeError")
    if allowed is not None:
        for v in value:
            if v not in allowed:
                raise HttpError(
                    400, f"{key}: {v!r} is not one of {sorted(allowed)}", "PropertyValueNotInList"
                )
    return value


def subscription_from(tree: Tree, sub_id: str, body: dict) -> Subscription:
    """A push subscription from a POST body (EventDestination), or HttpError 400 naming the
    property at fault."""
    destination = body.get("Destination")
    if not isinstance(destination, str) or not destination:
        raise HttpError(400, "Destination is required", "PropertyMissing")
    url = urlsplit(destination)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise HttpError(400, "Destination must be an http(s) URL", "PropertyValueFormatError")
    protocol = body.get("Protocol", "Redfish")
    if protocol != "Redfish":
        raise HttpError(400, "Protocol must be Redfish", "PropertyValueNotInList")
    fmt = body.get("EventFormatType", EVENT)
    if fmt not in formats_of(tree):
        raise HttpError(
            400, f"EventFormatType must be one of {formats_of(tree)}", "PropertyValueNotInList"
        )
    context = body.get("Context", "")
    if not isinstance(context, str) or len(context) > 256:
        raise HttpError(400, "Context must be a string of at most 256", "PropertyValueTypeError")
    headers: dict[str, str] = {}
    raw_headers = body.get("HttpHeaders", [])
    if not isinstance(raw_headers, list) or not all(isinstance(h, dict) for h in raw_headers):
        raise HttpError(400, "HttpHeaders must be a list of objects", "PropertyValueTypeError")
    for item in raw_headers:
        headers.update({str(k): str(v) for k, v in item.items()})
    return Subscription(
        sub_id,
        Filter(
            frozenset({fmt}),
            frozenset(_strings(body, "RegistryPrefixes", frozenset(REGISTRIES))),
            frozenset(_strings(body, "MessageIds")),
        ),
        context=context,
        destination=destination,
        headers=headers,
        event_types=_strings(body, "EventTypes", frozenset((*EVENT_TYPES, "Other"))),
        resource_types=_strings(body, "ResourceTypes"),
    )


def formats_of(tree: Tree) -> list[str]:
    """MetricReports are offered where there is a report and SSE to carry it."""
    reports = callable(getattr(tree, "metric_report", None)) and tree.flavour.sse
    return [EVENT, METRIC_REPORT] if reports else [EVENT]


def parse_duration(text: object) -> float:
    """An ISO 8601 duration as MetricReportDefinition's RecurrenceInterval writes it."""
    match = re.fullmatch(r"P(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)", str(text))
    if match is None or not any(match.groups()):
        raise HttpError(
            400,
            f"RecurrenceInterval {text!r} is not a duration like PT10S",
            "PropertyValueFormatError",
        )
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: float) -> str:
    return f"PT{seconds:g}S"


# --- the service module -----------------------------------------------------------------------


class EventService:
    """``/redfish/v1/EventService`` (every device) and the MetricReportDefinition (BMCs)."""

    def attach(self, tree: Tree) -> None:
        tree.site.listeners.append(bus(tree).on_fault)

    def root_links(self, tree: Tree) -> dict[str, str]:
        return {"EventService": EVENT_SERVICE}

    def allow(self, tree: Tree, path: str) -> list[str] | None:
        events = bus(tree)
        if path == SUBSCRIPTIONS:
            return ["GET", "HEAD", "POST"]
        if path.startswith(SUBSCRIPTIONS + "/") and path.rsplit("/", 1)[-1] in events.subscriptions:
            return ["GET", "HEAD", "DELETE"]
        if path == SUBMIT_TEST_EVENT:
            return ["POST"]
        if path == SSE_URI:
            return ["GET"] if tree.flavour.sse else []
        if path == DEFINITION and events.has_reports():
            return ["GET", "HEAD", "PATCH"]
        if path in (EVENT_SERVICE, SUBMIT_TEST_EVENT_INFO) or (
            path == DEFINITIONS and events.has_reports()
        ):
            return ["GET", "HEAD"]
        return None

    def resource(self, tree: Tree, path: str) -> dict | Stream | None:
        events = bus(tree)
        if path.startswith(DEFINITIONS):
            return self.definition(tree, path) if events.has_reports() else None
        if not path.startswith(EVENT_SERVICE):
            return None
        if path == EVENT_SERVICE:
            return self.service(tree)
        if path == SUBSCRIPTIONS:
            with events.lock:
                members = [link(f"{SUBSCRIPTIONS}/{i}") for i in events.subscriptions]
            return {
                "@odata.id": path,
                "@odata.type": "#EventDestinationCollection.EventDestinationCollection",
                "Name": "Event Subscriptions",
                "Members@odata.count": len(members),
                "Members": members,
            }
        if path.startswith(SUBSCRIPTIONS + "/"):
            sub = events.subscriptions.get(path.rsplit("/", 1)[-1])
            return sub.body() if sub is not None else None
        if path == SUBMIT_TEST_EVENT_INFO:
            return self.test_event_info()
        if path == SSE_URI and tree.flavour.sse:
            return self.stream(tree)
        return None

    def service(self, tree: Tree) -> dict:
        body = resource(
            EVENT_SERVICE,
            "EventService.v1_12_0.EventService",
            "EventService",
            "Event Service",
            ServiceEnabled=True,
            Status=status(),
            DeliveryRetryAttempts=DELIVERY_RETRY_ATTEMPTS,
            DeliveryRetryIntervalSeconds=DELIVERY_RETRY_INTERVAL_S,
            EventFormatTypes=formats_of(tree),
            RegistryPrefixes=sorted(REGISTRIES),
            IncludeOriginOfConditionSupported=False,
            Subscriptions=link(SUBSCRIPTIONS),
            Actions={
                "#EventService.SubmitTestEvent": {
                    "target": SUBMIT_TEST_EVENT,
                    "@Redfish.ActionInfo": SUBMIT_TEST_EVENT_INFO,
                }
            },
        )
        if tree.flavour.sse:
            body["ServerSentEventUri"] = SSE_URI
            body["SSEFilterPropertiesSupported"] = {
                "EventFormatType": True,
                "RegistryPrefix": True,
                "MessageId": True,
                "MetricReportDefinition": False,
                "OriginResource": False,
                "ResourceType": False,
                "SubordinateResources": False,
            }
        return body

    def test_event_info(self) -> dict:
        def param(name: str, data_type: str = "String", required: bool = False) -> dict:
            return {"Name": name, "Required": required, "DataType": data_type}

        return resource(
            SUBMIT_TEST_EVENT_INFO,
            "ActionInfo.v1_5_0.ActionInfo",
            "SubmitTestEventActionInfo",
            "SubmitTestEvent Action Info",
            Parameters=[
                {**param("EventType"), "AllowableValues": [*EVENT_TYPES, "Other"]},
                param("EventId"),
                param("EventTimestamp"),
                param("Severity"),
                param("Message"),
                param("MessageId", required=True),
                param("MessageArgs", "StringArray"),
                param("OriginOfCondition"),
            ],
        )

    def stream(self, tree: Tree) -> Stream:
        query, headers = SSE_REQUEST.get() or ("", {})
        accept = headers.get("Accept") or headers.get("accept") or "*/*"
        if not any(t in accept for t in ("text/event-stream", "*/*", "text/*")):
            # DSP0266 "Server-sent events": a client that does not accept the stream gets a 4xx.
            raise HttpError(406, f"{SSE_URI} answers text/event-stream only", "GeneralError")
        raw = parse_qs(query).get("$filter")
        flt = parse_filter(raw[0]) if raw else Filter()
        last = headers.get("Last-Event-ID") or headers.get("last-event-id")
        last_id: int | None = None
        if last is not None:
            try:
                last_id = int(last)
            except ValueError:
                raise HttpError(
                    400, "Last-Event-ID must be an event id", "QueryParameterValueFormatError"
                ) from None
        return bus(tree).open_stream(flt, last_id)

    def definition(self, tree: Tree, path: str) -> dict | None:
        if path == DEFINITIONS:
            return {
                "@odata.id": path,
                "@odata.type": "#MetricReportDefinitionCollection.MetricReportDefinitionCollection",
                "Name": "Metric report definitions",
                "Members@odata.count": 1,
                "Members": [link(DEFINITION)],
            }
        if path != DEFINITION:
            return None
        return resource(
            path,
            "MetricReportDefinition.v1_4_7.MetricReportDefinition",
            REPORT_ID,
            "Per-chip metrics",
            MetricReportDefinitionType="Periodic",
            MetricReportDefinitionEnabled=True,
            Schedule={"RecurrenceInterval": format_duration(bus(tree).report_interval_s)},
            ReportActions=["RedfishEvent", "LogToMetricReportsCollection"],
            ReportUpdates="Overwrite",
            MetricReport=link(f"{TELEMETRY}/MetricReports/{REPORT_ID}"),
            Status=status(),
        )

    def post(self, tree: Tree, path: str, body: dict) -> Reply | None:
        events = bus(tree)
        if path == SUBSCRIPTIONS:
            sub = events.add(subscription_from(tree, events.new_id(), body))
            created = sub.body()
            return 201, created, {"Location": created["@odata.id"]}
        if path == SUBMIT_TEST_EVENT:
            self.submit_test_event(tree, body)
            return 204, {}, {}
        return None

    def submit_test_event(self, tree: Tree, body: dict) -> None:
        """DSP0266: the service sends the event as given to every subscriber that wants it."""
        message_id = body.get("MessageId")
        if not isinstance(message_id, str) or not message_id:
            raise HttpError(
                400,
                "SubmitTestEvent requires MessageId",
                "ActionParameterMissing",
            )
        event_type = body.get("EventType", "Other")
        if event_type not in (*EVENT_TYPES, "Other"):
            raise HttpError(
                400, f"EventType {event_type!r} is not allowed", "PropertyValueNotInList"
            )
        severity = str(body.get("Severity", "OK"))
        record: dict = {
            "EventType": event_type,
            "MessageId": message_id,
            "Message": str(body.get("Message", "Test event")),
            "MessageArgs": [str(a) for a in body.get("MessageArgs", [])],
            "MessageSeverity": severity if severity in ("OK", "Warning", "Critical") else "OK",
            "EventTimestamp": str(body.get("EventTimestamp") or now_iso()),
            "OriginOfCondition": link(str(body.get("OriginOfCondition") or ROOT)),
        }
        if body.get("EventId"):
            record["EventId"] = str(body["EventId"])
        bus(tree).event([record], "Test event")

    def patch(self, tree: Tree, path: str, body: dict) -> Reply | None:
        events = bus(tree)
        if path != DEFINITION or not events.has_reports():
            return None
        unknown = set(body) - {"Schedule"}
        if unknown:
            raise HttpError(400, f"{sorted(unknown)} cannot be patched here", "PropertyNotWritable")
        schedule = body.get("Schedule")
        if not isinstance(schedule, dict) or "RecurrenceInterval" not in schedule:
            raise HttpError(400, "Schedule.RecurrenceInterval is required", "PropertyMissing")
        seconds = parse_duration(schedule["RecurrenceInterval"])
        if seconds < 1:
            raise HttpError(
                400, "RecurrenceInterval must be at least PT1S", "PropertyValueNotInList"
            )
        events.report_interval_s = seconds
        events.reports_wake.set()
        return 200, self.definition(tree, path) or {}, {}

    def delete(self, tree: Tree, path: str) -> Reply | None:
        if not path.startswith(SUBSCRIPTIONS + "/"):
            return None
        if bus(tree).remove(path.rsplit("/", 1)[-1]) is None:
            raise HttpError(404, f"no subscription at {path}", "ResourceMissingAtURI")
        return 204, {}, {}


SERVICES.append(EventService())
