"""The EventService over real HTTP: push subscriptions delivered to a real local listener, SSE
streams that carry a fault within a second, filters, replay, MetricReports, and the flavour
without SSE."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from factory import wire
from factory.simulator.__main__ import demo_layout
from factory.simulator.devices import Site, build_site
from factory.simulator.redfish import events
from factory.simulator.server import SiteServer
from tests.support.webhooks import Receiver

AUTH = ("admin", "factory-sim")
ROOT = wire.REDFISH_ROOT
EVENTS = f"{ROOT}/EventService"
SUBSCRIPTIONS = f"{EVENTS}/Subscriptions"
SSE = f"{EVENTS}/SSE"


@contextmanager
def device(flavour: str = "factory") -> Iterator[tuple[str, Site, str]]:
    """A site of one BMC of ``flavour``, served on free ports: (the BMC's URL, site, serial)."""
    layout = demo_layout(1, 1, "trn3")
    layout["racks"][0]["servers"][0]["flavour"] = flavour
    site = build_site(layout)
    server = SiteServer(site, tick_seconds=0.5).start()
    try:
        serial = next(iter(site.bmcs))
        url = next(d["url"] for d in server.devices if d["serial"] == serial)
        yield url, site, serial
    finally:
        server.stop()


class Sse:
    """An SSE client in a thread: each event as (id, payload, when it arrived)."""

    def __init__(self, url: str, path: str = SSE, headers: dict[str, str] | None = None):
        self.events: queue.Queue[tuple[str, dict, float]] = queue.Queue()
        self.response = requests.get(
            url + path,
            auth=AUTH,
            stream=True,
            timeout=(5, 30),
            headers={"Accept": "text/event-stream", **(headers or {})},
        )
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _lines(self) -> Iterator[str]:
        """The stream's lines as they arrive: whatever the socket has (``read1``), not a byte
        at a time (``iter_lines(chunk_size=1)`` is quadratic in a line's length, and a
        MetricReport is one line of hundreds of KB) nor a full buffer."""
        raw = self.response.raw
        pending = b""
        for chunk in iter(lambda: raw.read1(65536), b""):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r").decode()

    def _read(self) -> None:
        event_id, data = "", ""
        try:
            for raw in self._lines():
                if raw.startswith("id:"):
                    event_id = raw[3:].strip()
                elif raw.startswith("data:"):
                    data += raw[5:].strip()
                elif raw == "" and data:
                    self.events.put((event_id, json.loads(data), time.monotonic()))
                    event_id, data = "", ""
        except (requests.RequestException, AttributeError, ValueError):
            pass
        finally:
            self.ended.set()

    def next(self, timeout: float = 3.0) -> tuple[str, dict, float]:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        self.response.close()


def subscribe(url: str, **body: object) -> requests.Response:
    return requests.post(url + SUBSCRIPTIONS, json=body, auth=AUTH, timeout=5)


def wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def members(url: str) -> list[str]:
    body = requests.get(url + SUBSCRIPTIONS, auth=AUTH, timeout=5).json()
    return [m["@odata.id"] for m in body["Members"]]


def test_the_event_service_describes_itself_and_its_registries_resolve() -> None:
    with device() as (url, _site, _serial):
        root = requests.get(url + ROOT, auth=AUTH, timeout=5).json()
        assert root["EventService"] == {"@odata.id": EVENTS}
        service = requests.get(url + EVENTS, auth=AUTH, timeout=5).json()
        assert service["ServiceEnabled"] is True
        assert service["EventFormatTypes"] == ["Event", "MetricReport"]
        assert service["ServerSentEventUri"] == SSE
        assert service["DeliveryRetryAttempts"] >= 1
        assert {"ResourceEvent", "TaskEvent", "Base"} <= set(service["RegistryPrefixes"])
        files = requests.get(url + f"{ROOT}/Registries", auth=AUTH, timeout=5).json()
        for member in files["Members"]:
            file = requests.get(url + member["@odata.id"], auth=AUTH, timeout=5).json()
            registry = requests.get(url + file["Location"][0]["Uri"], auth=AUTH, timeout=5)
            body = registry.json()
            assert file["Registry"] == body["Id"].rsplit(".", 1)[0]
            assert body["RegistryPrefix"] in {"Base", "ResourceEvent", "TaskEvent"}
            for message in body["Messages"].values():
                assert message["NumberOfArgs"] == message["Message"].count("%")


def test_subscribe_read_and_delete() -> None:
    with device() as (url, _site, _serial):
        created = subscribe(
            url,
            Destination="http://127.0.0.1:9/hook",
            Protocol="Redfish",
            Context="ctx-1",
            RegistryPrefixes=["ResourceEvent"],
        )
        assert created.status_code == 201
        location = created.headers["Location"]
        assert location in members(url)
        body = requests.get(url + location, auth=AUTH, timeout=5).json()
        assert body["Destination"] == "http://127.0.0.1:9/hook"
        assert (body["Context"], body["Protocol"], body["EventFormatType"]) == (
            "ctx-1",
            "Redfish",
            "Event",
        )
        assert body["RegistryPrefixes"] == ["ResourceEvent"]
        assert requests.delete(url + location, auth=AUTH, timeout=5).status_code == 204
        assert requests.get(url + location, auth=AUTH, timeout=5).status_code == 404
        assert requests.delete(url + location, auth=AUTH, timeout=5).status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"Protocol": "Redfish"}, "PropertyMissing"),
        ({"Destination": "not a url"}, "PropertyValueFormatError"),
        ({"Destination": "http://x.example/", "Protocol": "SNMPv2c"}, "PropertyValueNotInList"),
        (
            {"Destination": "http://x.example/", "RegistryPrefixes": ["Nope"]},
            "PropertyValueNotInList",
        ),
        ({"Destination": "http://x.example/", "EventFormatType": "Log"}, "PropertyValueNotInList"),
    ],
)
def test_a_bad_subscription_is_refused_naming_the_rule(body: dict, message: str) -> None:
    with device() as (url, _site, _serial):
        refused = subscribe(url, **body)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"].endswith(message)
        assert members(url) == []


@pytest.mark.parametrize("flavour", ["factory", "contoso"])
def test_a_fault_is_pushed_to_a_subscribed_listener(flavour: str) -> None:
    with Receiver() as listener, device(flavour) as (url, site, serial):
        assert subscribe(url, Destination=listener.url(), Context="ops").status_code == 201
        site.inject(wire.EventKind.CHIP_FAILURE, serial, chip=3)
        assert wait_for(lambda: listener.requests, 3.0)
        event = json.loads(listener.requests[0].body)
        assert event["@odata.type"] == "#Event.v1_13_0.Event"
        assert event["Context"] == "ops"
        record = event["Events"][0]
        assert record["MessageId"] == "ResourceEvent.1.4.ResourceStatusChangedCritical"
        assert record["MessageSeverity"] == "Critical"
        assert record["EventType"] == "Alert"
        assert record["OriginOfCondition"]["@odata.id"].startswith(ROOT)
        assert record["Oem"][site.bmcs[serial].flavour.oem]["Kind"] == "chip-failure"


def test_push_delivery_is_retried_after_a_failure() -> None:
    with Receiver(script=[503]) as listener, device() as (url, site, serial):
        subscribe(url, Destination=listener.url())
        site.inject(wire.EventKind.LINK_DOWN, serial, chip=1, link=0)
        assert wait_for(lambda: len(listener.requests) >= 2, 8.0)
        first, second = (json.loads(r.body) for r in listener.requests[:2])
        assert first["Id"] == second["Id"]  # the same event, delivered again


def test_sse_carries_an_injected_fault_within_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    # A closed stream is noticed at the next write: keep-alives every second, not every 15.
    monkeypatch.setattr(events, "KEEPALIVE_S", 1.0)
    with device() as (url, site, serial):
        stream = Sse(url)
        try:
            assert wait_for(lambda: len(members(url)) == 1)  # an open stream is a destination
            for chip in range(3):
                began = time.monotonic()
                site.inject(wire.EventKind.CHIP_FAILURE, serial, chip=chip)
                event_id, payload, arrived = stream.next()
                assert arrived - began < 1.0
                assert payload["Id"] == event_id
                assert payload["Events"][0]["EventId"] == event_id
                assert payload["Events"][0]["Oem"][wire.OEM]["Chip"] == chip
        finally:
            stream.close()
        assert wait_for(lambda: members(url) == [], 5.0)


def test_faults_on_other_devices_are_not_this_devices_events() -> None:
    with device() as (url, site, _serial):
        stream = Sse(url)
        try:
            cdu = next(iter(site.cdus))
            site.inject(wire.EventKind.COOLANT_EXCURSION, cdu)
            with pytest.raises(queue.Empty):
                stream.next(timeout=1.0)
        finally:
            stream.close()


def test_deleting_the_streams_destination_ends_the_stream() -> None:
    with device() as (url, _site, _serial):
        stream = Sse(url)
        assert wait_for(lambda: len(members(url)) == 1)
        (destination,) = members(url)
        body = requests.get(url + destination, auth=AUTH, timeout=5).json()
        assert body["SubscriptionType"] == "SSE"
        assert isinstance(body["Context"], str)
        assert requests.delete(url + destination, auth=AUTH, timeout=5).status_code == 204
        assert stream.ended.wait(5.0)


def test_last_event_id_replays_what_was_missed(monkeypatch: pytest.MonkeyPatch) -> None:
    # The closed first stream is noticed at the next write: keep-alives every second.
    monkeypatch.setattr(events, "KEEPALIVE_S", 1.0)
    with device() as (url, site, serial):
        stream = Sse(url)
        ids = []
        for chip in range(3):
            site.inject(wire.EventKind.ECC_STORM, serial, chip=chip)
            ids.append(stream.next()[0])
        stream.close()
        again = Sse(url, headers={"Last-Event-ID": ids[0]})
        try:
            assert [again.next()[0] for _ in range(2)] == ids[1:]
            site.inject(wire.EventKind.ECC_STORM, serial, chip=9)
            # Then live ones, numbered on (a periodic MetricReport shares the numbering).
            event_id, payload, _at = again.next()
            while payload["@odata.type"].startswith("#MetricReport."):
                assert int(event_id) > int(ids[-1])
                event_id, payload, _at = again.next()
            assert int(event_id) > int(ids[-1])
            assert payload["Events"][0]["Oem"][wire.OEM]["Chip"] == 9
        finally:
            again.close()


def test_a_replay_keeps_only_the_newest_metric_reports() -> None:
    """Events are replayed from a ring of ``RING_SIZE``; reports, each every chip's sample,
    from a ring of their own, the newest ``REPORT_RING_SIZE``."""
    layout = demo_layout(1, 1, "trn3")
    site = build_site(layout)
    server = SiteServer(site, tick_seconds=0.5).start()
    try:
        serial = next(iter(site.bmcs))
        url = next(d["url"] for d in server.devices if d["serial"] == serial)
        bus = events.bus(server.trees[serial])
        for _ in range(events.REPORT_RING_SIZE + 3):
            bus.publish_report()
        site.inject(wire.EventKind.ECC_STORM, serial, chip=0)
        stream = Sse(url, headers={"Last-Event-ID": "0"})
        try:
            replayed = [stream.next() for _ in range(events.REPORT_RING_SIZE + 1)]
        finally:
            stream.close()
        numbers = [int(event_id) for event_id, _payload, _at in replayed]
        # Reports 1-3 fell out of their ring; the rest come in order, then the event.
        assert numbers == list(range(4, events.REPORT_RING_SIZE + 5))
        kinds = [payload["@odata.type"].split(".")[0] for _id, payload, _at in replayed]
        assert kinds == ["#MetricReport"] * events.REPORT_RING_SIZE + ["#Event"]
    finally:
        server.stop()


def test_a_filter_on_event_format_type_is_honoured_and_reports_follow_the_schedule() -> None:
    with device() as (url, site, serial):
        definition = f"{ROOT}/TelemetryService/MetricReportDefinitions/{wire.ReportId.CHIPS}"
        body = requests.get(url + definition, auth=AUTH, timeout=5).json()
        assert body["MetricReportDefinitionType"] == "Periodic"
        assert body["Schedule"]["RecurrenceInterval"] == "PT10S"
        patched = requests.patch(
            url + definition,
            json={"Schedule": {"RecurrenceInterval": "PT1S"}},
            auth=AUTH,
            timeout=5,
        )
        assert patched.status_code == 200
        reports = Sse(url, f"{SSE}?$filter=EventFormatType%20eq%20%27MetricReport%27")
        alerts = Sse(url, f"{SSE}?$filter=EventFormatType%20eq%20%27Event%27")
        try:
            site.inject(wire.EventKind.CHIP_FAILURE, serial, chip=0)
            _id, alert, _at = alerts.next()
            assert alert["@odata.type"] == "#Event.v1_13_0.Event"
            _id, report, _at = reports.next(timeout=3.0)
            assert report["@odata.type"].startswith("#MetricReport.")
            assert report["MetricReportDefinition"]["@odata.id"] == definition
            assert report["MetricValues"]
            _id, report, _at = reports.next(timeout=3.0)  # every interval, not once
            assert report["@odata.type"].startswith("#MetricReport.")
            with pytest.raises(queue.Empty):
                alerts.next(timeout=1.5)  # the alert stream gets no reports
        finally:
            reports.close()
            alerts.close()


def test_a_bad_filter_is_a_400() -> None:
    with device() as (url, _site, _serial):
        answer = requests.get(
            url + f"{SSE}?$filter=Severity%20gt%203", auth=AUTH, timeout=5, stream=True
        )
        assert answer.status_code == 400
        assert answer.json()["error"]["code"].endswith("QueryParameterValueFormatError")


def test_contoso_has_no_sse_but_submits_test_events_to_push_subscribers() -> None:
    with Receiver() as listener, device("contoso") as (url, _site, _serial):
        service = requests.get(url + EVENTS, auth=AUTH, timeout=5).json()
        assert "ServerSentEventUri" not in service
        assert service["EventFormatTypes"] == ["Event"]
        assert requests.get(url + SSE, auth=AUTH, timeout=5).status_code == 404
        subscribe(url, Destination=listener.url(), Context="c")
        sent = requests.post(
            url + f"{EVENTS}/Actions/EventService.SubmitTestEvent",
            json={"MessageId": "ResourceEvent.1.4.ResourceChanged", "Message": "hello"},
            auth=AUTH,
            timeout=5,
        )
        assert sent.status_code == 204
        assert wait_for(lambda: listener.requests, 3.0)
        record = json.loads(listener.requests[0].body)["Events"][0]
        assert (record["MessageId"], record["Message"]) == (
            "ResourceEvent.1.4.ResourceChanged",
            "hello",
        )


@pytest.mark.parametrize(
    ("kind", "message_id", "severity"),
    [
        (wire.EventKind.HBM_FAILURE, "ResourceErrorThresholdExceeded", "Critical"),
        (wire.EventKind.ECC_STORM, "ResourceErrorsDetected", "Warning"),
        (wire.EventKind.CHIP_FAILURE, "ResourceStatusChangedCritical", "Critical"),
    ],
)
def test_the_event_and_the_event_log_word_a_fault_alike(
    kind: str, message_id: str, severity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One fault, one ResourceEvent message: the Event's record and the EventLog's entry."""
    monkeypatch.setattr(events, "KEEPALIVE_S", 1.0)  # the closed stream is noticed soon
    with device() as (url, site, serial):
        entries = f"{ROOT}/Managers/BMC/LogServices/EventLog/Entries"
        stream = Sse(url)
        try:
            site.inject(kind, serial, chip=2)
            _id, payload, _at = stream.next()
        finally:
            stream.close()
        record = payload["Events"][0]
        listing = requests.get(url + entries, auth=AUTH, timeout=5).json()
        entry = requests.get(url + listing["Members"][-1]["@odata.id"], auth=AUTH, timeout=5)
        entry_body = entry.json()
        assert record["MessageId"] == entry_body["MessageId"]
        assert record["MessageId"] == f"ResourceEvent.1.4.{message_id}"
        assert (record["MessageSeverity"], entry_body["Severity"]) == (severity, severity)
        assert record["Message"] == entry_body["Message"]
        assert record["MessageArgs"] == entry_body["MessageArgs"]
        assert record["OriginOfCondition"] == entry_body["Links"]["OriginOfCondition"]
