"""A stream that went silent is not live, and polling's findings are sent whatever the stream
seems; every loop survives what one round throws; a stream that keeps dropping is not hammered.
Real simulated sites on free ports; the dead peer is a TCP relay that stops relaying."""

from __future__ import annotations

import socket
import threading
import time

import requests

from factory import wire
from factory.siteagent.agent import Agent
from factory.siteagent.devices import Device
from factory.siteagent.outbox import Outbox
from factory.siteagent.sse import EventStream
from factory.wire import DeviceKind, EventKind
from tests.factory.siteagent.sites import PASSWORD, USERNAME, StaticService, site


class Relay:
    """TCP between the agent and a device; ``freeze`` stops passing bytes both ways without
    closing anything: a peer that died (power, a cable) as the agent sees it."""

    def __init__(self, target: str):
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.frozen = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.05)  # hold it: nothing arrives, nothing closes
                sink.sendall(data)
        except OSError:
            pass

    def freeze(self) -> None:
        self.frozen.set()

    def close(self) -> None:
        self.listener.close()


def inject(server, kind: str, target: str, **fields: object) -> None:
    answer = requests.post(
        f"{server.control_url}/sim/faults",
        json={"kind": kind, "target": target, **fields},
        timeout=5,
    )
    assert answer.status_code == 201, answer.text


def kinds_waiting(agent: Agent) -> list[tuple[str, int | None]]:
    return [(e["kind"], e.get("chip")) for _, e in agent.outbox.oldest_events(100)]


def wait_until(check, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, f"{what} not within {timeout_s} s"
        time.sleep(0.02)
    return time.monotonic() - started


def test_a_silent_stream_is_not_live_within_its_silence_limit(tmp_path):
    with site("factory") as server:
        bmc_entry = next(d for d in server.listing()["devices"] if d["kind"] == DeviceKind.BMC)
        relay = Relay(bmc_entry["url"])
        bmc = Device(DeviceKind.BMC, bmc_entry["serial"], relay.url, USERNAME, PASSWORD, 1.0)
        agent = Agent(
            control_plane="http://127.0.0.1:9",
            token="unused",
            devices=[bmc],
            outbox=Outbox(str(tmp_path / "outbox.sqlite3")),
            interval_s=0.5,
            stream_idle_s=1.5,  # the floor (40 s in production): the test's patience
        )
        assert agent.stream_idle_s() == 1.5
        agent.interval_s = 10.0
        assert agent.stream_idle_s() == 20.0  # two report intervals when they are longer
        agent.interval_s = 0.5
        agent.start_streams()
        try:
            wait_until(lambda: agent.streaming(bmc), 5, "the stream open")
            time.sleep(0.5)
            assert agent.streaming(bmc)  # quiet but heard from (the stream's first lines)
            relay.freeze()  # the BMC's end dies: no FIN, no RST, nothing more
            took = wait_until(lambda: not agent.streaming(bmc), 3.0, "the stream not live")
            assert took < 2.0  # its silence limit, not IDLE_S of old (300 s)
        finally:
            agent.shutdown(grace_s=0.5)
            relay.close()


def test_what_polling_finds_is_sent_even_while_the_stream_is_live(tmp_path):
    """The stream is up, but the event it carried was lost (a device that drops events under
    load; an agent busy reconnecting): the poll's finding is sent, not thrown away."""
    with site("factory") as server:
        listing = server.listing()
        devices = [
            Device(d["kind"], d["serial"], d["url"], USERNAME, PASSWORD) for d in listing["devices"]
        ]
        bmc = next(d for d in devices if d.kind == DeviceKind.BMC)
        agent = Agent(
            control_plane="http://127.0.0.1:9",
            token="unused",
            devices=devices,
            outbox=Outbox(str(tmp_path / "outbox.sqlite3")),
            interval_s=0.5,
        )
        # The stream is held, but what it delivers is lost before it reaches the outbox.
        stream = EventStream(bmc, lambda events: None, stop=agent.stop).start()
        agent.streams[bmc.serial] = stream
        poller = threading.Thread(target=agent._poll_loop, daemon=True)
        try:
            wait_until(lambda: agent.streaming(bmc), 5, "the stream open")
            poller.start()
            time.sleep(1.0)  # a first poll: the baseline
            inject(server, EventKind.CHIP_FAILURE, bmc.serial, chip=3)
            wait_until(
                lambda: (EventKind.CHIP_FAILURE, 3) in kinds_waiting(agent), 2.0, "the chip fault"
            )
            assert agent.streaming(bmc)  # it was live all along
            inject(server, EventKind.LEAK, bmc.serial)  # leak detectors are read too
            wait_until(lambda: (EventKind.LEAK, None) in kinds_waiting(agent), 2.0, "the leak")
            leak = next(e for _, e in agent.outbox.oldest_events(100) if e["kind"] == "leak")
            assert leak.get("device_kind") == DeviceKind.BMC
            assert kinds_waiting(agent).count((EventKind.CHIP_FAILURE, 3)) == 1  # once
        finally:
            agent.shutdown(grace_s=1.0)


def test_a_leak_read_that_fails_loses_no_report_and_a_broken_device_stops_no_loop(tmp_path):
    broken = StaticService(
        {
            wire.REDFISH_ROOT: {"TelemetryService": {"@odata.id": "/redfish/v1/TelemetryService"}},
            "/redfish/v1/TelemetryService": {"MetricReports": "not a link"},  # a TypeError
        }
    )
    with site("factory") as server:
        listing = server.listing()
        good = [
            Device(d["kind"], d["serial"], d["url"], USERNAME, PASSWORD) for d in listing["devices"]
        ]
        bmc = next(d for d in good if d.kind == DeviceKind.BMC)
        agent = Agent(
            control_plane="http://127.0.0.1:9",
            token="unused",
            devices=[broken.device(), *good],
            outbox=Outbox(str(tmp_path / "outbox.sqlite3")),
            interval_s=0.3,
        )
        agent.leak_watch[bmc.serial].sources = ["/redfish/v1/Chassis/NoSuchTray/LeakDetection"]
        poller = threading.Thread(target=agent._poll_loop, daemon=True)
        poller.start()
        try:
            time.sleep(1.5)
            assert poller.is_alive()
            sources = [
                r["Oem"][wire.OEM][wire.ReportKey.SOURCE]
                for _, r in agent.outbox.oldest_reports(100)
            ]
            assert sources.count(bmc.serial) >= 3  # its leak read fails every round
            assert "OTHER-1" not in sources
            assert agent.stats["poll_errors"] >= 6  # both failures, every round, logged
        finally:
            agent.shutdown(grace_s=1.0)
            broken.stop()


def test_a_stream_that_drops_at_once_is_reopened_with_backoff():
    def sse(handler) -> None:  # 200, then the connection ends: a service in a crash loop
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True

    service = StaticService(
        {
            wire.REDFISH_ROOT: {"EventService": {"@odata.id": "/redfish/v1/EventService"}},
            "/redfish/v1/EventService": {"ServerSentEventUri": "/redfish/v1/EventService/SSE"},
            "/redfish/v1/EventService/SSE": sse,
        }
    )
    stream = EventStream(service.device(), lambda events: None).start()
    try:
        time.sleep(3.2)
        # 0.5, 1, 2 s apart: four opens at most, not one every RETRY_MIN_S (six or more).
        assert 2 <= stream.connects <= 4, stream.connects
    finally:
        stream.close()
        stream.join(2)
        service.stop()
