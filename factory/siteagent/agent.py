"""The agent's three loops: poll devices → outbox; outbox → control plane; commands."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import requests

from factory import wire
from factory.siteagent.commands import execute
from factory.siteagent.devices import POLLERS, Device, DeviceError, chip_report
from factory.siteagent.faults import ChipWatch, LeakWatch
from factory.siteagent.outbox import Outbox
from factory.siteagent.sse import EventStream
from factory.wire import OEM, FeedReading, ReportKey

log = logging.getLogger("factory.siteagent")
MAX_BATCH_REPORTS = 50
MAX_EVENT_BATCH = 100
MAX_RESULT_BATCH = wire.MAX_RESULTS
RESULT_LINGER_S = 0.05  # how long a finished result waits for others to share its request
CONFIG_EVERY_S = 60.0
JSON = {"Content-Type": "application/json"}


def _json(message: Mapping[str, object]) -> bytes:
    """A wire message as ``requests``' ``json=`` sends it (its JsonType refuses TypedDicts)."""
    return json.dumps(message, allow_nan=False).encode()


class Agent:
    def __init__(
        self,
        *,
        control_plane: str,
        token: str,
        devices: list[Device],
        outbox: Outbox,
        interval_s: float = 10.0,
        image_base: str = "https://artifacts.invalid/firmware",
        task_poll_s: float = 1.0,
        claim_wait_s: float = 20.0,
        sse: bool = True,
    ):
        self.base = control_plane.rstrip("/")
        self.devices = devices
        self.bmcs = {d.serial: d for d in devices if d.kind == wire.DeviceKind.BMC}
        self.outbox = outbox
        self.interval_s = interval_s
        self.image_base = image_base
        self.task_poll_s = task_poll_s
        self.claim_wait_s = claim_wait_s
        self.http = requests.Session()
        self.http.headers[wire.AUTH_HEADER] = wire.authorization(token)
        self.stop = threading.Event()
        self.allowed_metrics: set[str] | None = None  # unknown until the control plane says
        self.allowed_categories: set[str] = set()
        self.config_at = 0.0
        self.feed_state: dict[str, bool] = {}
        self.stats = {
            "polled": 0,
            "poll_errors": 0,
            "sent": 0,
            "replayed": 0,
            "commands": 0,
            "result_posts": 0,
        }
        self.results: queue.Queue[wire.BatchOutcome] = queue.Queue()
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="agent")
        # Push: each device's event stream (if it has one); polling stands in where not.
        self.wake = threading.Event()  # an event is waiting: the push loop sends it now
        self.sse = sse
        self.streams: dict[str, EventStream] = {}
        self.chip_watch = {serial: ChipWatch() for serial in self.bmcs}
        self.leak_watch = {d.serial: LeakWatch() for d in devices if d.kind != wire.DeviceKind.PDU}
        self.pushed_at: dict[str, float] = {}  # a BMC's last MetricReport over its stream

    # --- devices → outbox ----------------------------------------------------------------

    def streaming(self, device: Device) -> bool:
        """Whether the device's event stream is open now (else polling finds its faults)."""
        stream = self.streams.get(device.serial)
        return stream is not None and stream.live

    def add_events(self, events: list[wire.Event]) -> None:
        """Events into the outbox, and the push loop woken to send them at once."""
        for event in events:
            self.outbox.add_event(event)
        if events:
            self.stats["events"] = self.stats.get("events", 0) + len(events)
            self.wake.set()

    def _pushed_report(self, device: Device, body: dict) -> None:
        """A BMC's MetricReport over its stream: stands in for that interval's poll."""
        if device.kind != wire.DeviceKind.BMC or body.get("Id") != wire.ReportId.CHIPS:
            return
        report = chip_report(device.serial, body)
        self._chip_events(device, report)
        self.outbox.add_reports([report])
        self.stats["polled"] += 1
        self.pushed_at[device.serial] = time.monotonic()

    def _chip_events(self, device: Device, report: dict) -> None:
        events = self.chip_watch[device.serial].see(report)
        if not self.streaming(device):
            self.add_events(events)

    def poll_once(self) -> int:
        def poll(device: Device) -> dict | None:
            pushed = self.pushed_at.get(device.serial)
            if pushed is not None and time.monotonic() - pushed < self.interval_s:
                return None  # its stream brought this interval's report
            try:
                report = POLLERS[device.kind](device)
                if device.serial in self.leak_watch and not self.streaming(device):
                    self.add_events(
                        self.leak_watch[device.serial].poll(device, report["Timestamp"], True)
                    )
                return report
            except (DeviceError, KeyError, ValueError, IndexError) as exc:
                self.stats["poll_errors"] += 1
                log.warning("poll %s failed: %s", device.serial, exc)
                return None

        polled = list(zip(self.devices, self.pool.map(poll, self.devices), strict=True))
        reports = [r for _, r in polled if r is not None]
        for device, report in polled:
            if report is not None and device.serial in self.chip_watch:
                self._chip_events(device, report)
        for report in reports:
            self._events_from(report)
        if reports:
            self.outbox.add_reports(reports)
            self.stats["polled"] += len(reports)
        return len(reports)

    def _events_from(self, report: dict) -> None:
        """A feed going down is an event: the control plane hears at once, not at the next
        health evaluation."""
        oem = report["Oem"][OEM]
        for feed, reading in (oem.get(ReportKey.FEEDS) or {}).items():
            was = self.feed_state.get(feed, True)
            self.feed_state[feed] = reading[FeedReading.UP]
            source = oem[ReportKey.SOURCE]
            device = next((d for d in self.devices if d.serial == source), None)
            if was and not reading[FeedReading.UP] and not (device and self.streaming(device)):
                self.add_events(
                    [
                        wire.Event(
                            source=source,
                            kind=wire.EventKind.FEED_LOSS,
                            feed=feed,
                            message=f"power feed {feed} lost",
                            timestamp=report["Timestamp"],
                        )
                    ]
                )

    def _poll_loop(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            self.poll_once()
            self.stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    # --- outbox → control plane ----------------------------------------------------------

    def refresh_config(self) -> bool:
        try:
            response = self.http.get(wire.api_url(self.base, wire.CONFIG_PATH), timeout=10)
        except requests.RequestException as exc:
            log.info("control plane unreachable (config): %s", exc)
            return False
        if response.status_code != 200:
            log.warning("config refused: %s %s", response.status_code, response.text[:200])
            return False
        config: wire.AgentConfig = response.json()
        self.allowed_metrics = set(config["metrics"])
        self.allowed_categories = set(config["telemetry_categories"])
        self.interval_s = float(config.get("interval_seconds", self.interval_s))
        self.config_at = time.monotonic()
        return True

    def _egress(self, report: dict) -> dict | None:
        """Only what the site's egress rule lets leave; None: nothing of it may."""
        if self.allowed_metrics is None:  # never told what may leave: nothing does
            return None
        allowed = self.allowed_metrics
        oem = report["Oem"][OEM]
        if ReportKey.CHIPS in oem:
            chips = oem[ReportKey.CHIPS]
            oem[ReportKey.CHIPS] = {m: v for m, v in chips.items() if m in allowed}
            return report if oem[ReportKey.CHIPS] else None
        for key, category in wire.DEVICE_REPORT_CATEGORY.items():
            if key in oem and category not in self.allowed_categories:
                return None
        return report

    def push_once(self) -> bool:
        """Send the oldest waiting reports and events; False if the control plane is away."""
        stale = self.allowed_metrics is None or time.monotonic() - self.config_at > CONFIG_EVERY_S
        # Without ever hearing which telemetry may leave, nothing leaves (fail closed).
        if stale and not self.refresh_config() and self.allowed_metrics is None:
            return False
        while not self.stop.is_set():
            rows = self.outbox.oldest_reports(MAX_BATCH_REPORTS)
            if not rows:
                break
            reports = [r for r in (self._egress(body) for _, body in rows) if r is not None]
            if reports:
                try:
                    response = self.http.post(
                        wire.api_url(self.base, wire.TELEMETRY_PATH),
                        data=json.dumps(wire.TelemetryBatch(reports=reports)),
                        headers={"Content-Type": "application/json"},
                        timeout=30,
                    )
                except requests.RequestException as exc:
                    log.info("control plane unreachable (telemetry): %s", exc)
                    return False
                if response.status_code >= 500 or response.status_code in (401, 429):
                    log.warning("telemetry not taken: %s", response.status_code)
                    return False
                if response.status_code != 200:
                    # Refused as malformed or foreign: sending it again would not help.
                    log.error(
                        "telemetry batch refused, dropped: %s %s",
                        response.status_code,
                        response.text[:500],
                    )
                else:
                    answer: wire.IngestAnswer = response.json()
                    self.stats["sent"] += answer["accepted"]
                    self.stats["replayed"] += answer["replayed"]
            self.outbox.delete_reports([row_id for row_id, _ in rows])
        return self._push_events()

    def _push_events(self) -> bool:
        rows = self.outbox.oldest_events(MAX_EVENT_BATCH)
        if not rows:
            return True
        try:
            response = self.http.post(
                wire.api_url(self.base, wire.EVENTS_PATH),
                data=_json(wire.EventBatch(events=[body for _, body in rows])),
                headers=JSON,
                timeout=30,
            )
        except requests.RequestException:
            return False
        if response.status_code >= 500 or response.status_code in (401, 429):
            return False
        if response.status_code != 200:
            log.error("events refused, dropped: %s %s", response.status_code, response.text[:300])
        self.outbox.delete_events([row_id for row_id, _ in rows])
        return True

    def _push_loop(self) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            self.wake.clear()
            # Events first: a fault must not queue behind a backlog of telemetry.
            if self.outbox.oldest_events(1):
                self._push_events()
            if self.push_once():
                backoff = 1.0
                self.wake.wait(min(1.0, self.interval_s))
            else:
                self.wake.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    # --- commands ------------------------------------------------------------------------

    def claim_once(self, wait_s: float | None = None) -> int:
        wait = self.claim_wait_s if wait_s is None else wait_s
        try:
            response = self.http.post(
                wire.api_url(self.base, wire.CLAIM_PATH),
                data=_json(wire.ClaimRequest(limit=10, wait_seconds=wait)),
                headers=JSON,
                timeout=wait + 15,
            )
        except requests.RequestException as exc:
            log.info("control plane unreachable (commands): %s", exc)
            return -1
        if response.status_code != 200:
            log.warning("claim refused: %s", response.status_code)
            return -1
        answer: wire.ClaimResponse = response.json()
        commands = answer["commands"]
        for command in commands:
            self.pool.submit(self._carry_out, command)
        return len(commands)

    def _carry_out(self, command: wire.ClaimedCommand) -> None:
        self.stats["commands"] += 1
        bmc = self.bmcs.get(command.get("ultraserver_serial") or "")
        if bmc is None:
            outcome: tuple[bool, dict, str] = (
                False,
                {},
                f"no BMC for {command.get('ultraserver_serial')} at this site",
            )
        else:
            outcome = execute(
                bmc,
                command["kind"],
                command.get("params") or {},
                image_base=self.image_base,
                poll_s=self.task_poll_s,
            )
        ok, result, error = outcome
        error = error[: wire.MAX_ERROR_LENGTH]
        self.results.put(wire.BatchOutcome(id=command["id"], ok=ok, result=result, error=error))

    def result_loop(self) -> None:
        """Results that finish together go in one request (a batch of flashes ends at about the
        same time; the control plane then wakes their workflow steps together).

        Public, unlike the other loops, so the result sender can run on its own (without
        ``start``'s polling and claiming): a caller that claims and carries out commands itself,
        as the tests do, still has its results batched the way the agent sends them."""
        while not self.stop.is_set():
            try:
                batch = [self.results.get(timeout=0.5)]
            except queue.Empty:
                continue
            deadline = time.monotonic() + RESULT_LINGER_S
            while len(batch) < MAX_RESULT_BATCH and (left := deadline - time.monotonic()) > 0:
                try:
                    batch.append(self.results.get(timeout=left))
                except queue.Empty:
                    break
            self.send_results(batch)

    def send_results(self, batch: list[wire.BatchOutcome]) -> None:
        response = self._post(
            wire.api_url(self.base, wire.RESULTS_PATH), wire.BatchOutcomes(results=batch)
        )
        if response is None:
            log.error("results for %s never delivered; they will expire", [r["id"] for r in batch])
            return
        self.stats["result_posts"] += 1
        if response.status_code == 200:
            return
        # All or nothing, and one was refused: deliver each alone, so the others still land.
        log.warning("result batch refused (%s); sending each alone", response.status_code)
        for item in batch:
            body = wire.CommandOutcome(ok=item["ok"], result=item["result"], error=item["error"])
            url = wire.api_url(self.base, wire.RESULT_PATH, command_id=item["id"])
            alone = self._post(url, body)
            if alone is not None and alone.status_code != 200:
                log.warning(
                    "result for %s refused: %s %s",
                    item["id"],
                    alone.status_code,
                    alone.text[:300],
                )

    def _post(self, url: str, body: Mapping[str, object]) -> requests.Response | None:
        """POST until the control plane answers (anything but a 5xx); None if it never does
        or the agent is stopping."""
        for attempt in range(30):
            try:
                response = self.http.post(url, data=_json(body), headers=JSON, timeout=30)
                if response.status_code < 500:
                    return response
            except requests.RequestException:
                pass
            self.stop.wait(min(2.0**attempt, 30.0))
            if self.stop.is_set():
                return None
        return None

    def _command_loop(self) -> None:
        while not self.stop.is_set():
            if self.claim_once() < 0:
                self.stop.wait(2.0)

    # --- lifecycle -----------------------------------------------------------------------

    def start_streams(self) -> None:
        """An event stream per device that offers one (each its own thread)."""
        for device in self.devices:
            if device.serial not in self.streams:
                self.streams[device.serial] = EventStream(
                    device, self.add_events, self._pushed_report, stop=self.stop
                ).start()

    def start(self) -> Agent:
        if self.sse:
            self.start_streams()
        for target in (self._poll_loop, self._push_loop, self._command_loop, self.result_loop):
            threading.Thread(target=target, daemon=True, name=target.__name__).start()
        return self

    def shutdown(self) -> None:
        """Stop the loops and streams, and delete each device's session (a BMC has few)."""
        self.stop.set()
        self.wake.set()
        for stream in self.streams.values():
            stream.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        for device in self.devices:
            device.close()
