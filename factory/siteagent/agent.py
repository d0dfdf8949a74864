"""The agent's loops: poll devices → outbox; outbox → control plane; commands; results.

Every loop survives whatever one round throws (logged with its device, then the next round),
so no part of the agent dies silently while the rest looks alive."""

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
from factory.siteagent.devices import POLLERS, Device, DeviceError, chip_report, now_iso
from factory.siteagent.faults import ChipWatch, LeakWatch
from factory.siteagent.outbox import Outbox
from factory.siteagent.sse import IDLE_S, EventStream
from factory.wire import OEM, CommandKind, CommandParam, EventKind, FeedReading, ReportKey

log = logging.getLogger("factory.siteagent")
MAX_BATCH_REPORTS = 50
MAX_EVENT_BATCH = 100
MAX_RESULT_BATCH = wire.MAX_RESULTS
RESULT_LINGER_S = 0.05  # how long a finished result waits for others to share its request
CONFIG_EVERY_S = 60.0
JSON = {"Content-Type": "application/json"}
COMMAND_WORKERS = 8  # flashes may hold these for up to TASK_TIMEOUT_S each
URGENT_WORKERS = 4  # isolation (ForceOff) never waits behind them
POLL_WORKERS = 8
#: How long shutdown waits for streams and commands in flight before it logs out.
SHUTDOWN_GRACE_S = 5.0
PUSH_BACKOFF_MAX_S = 30.0


def urgent(command: wire.ClaimedCommand) -> bool:
    """A command that must run at once: the power-off that isolates a leaking server."""
    params = command.get("params") or {}
    return (
        command.get("kind") == CommandKind.RESET
        and params.get(CommandParam.RESET_TYPE) == wire.ISOLATION_RESET_TYPE
    )


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
        stream_idle_s: float = IDLE_S,
    ):
        self.base = control_plane.rstrip("/")
        self.devices = devices
        self.bmcs = {d.serial: d for d in devices if d.kind == wire.DeviceKind.BMC}
        self.outbox = outbox
        self.interval_s = interval_s
        self.image_base = image_base
        self.task_poll_s = task_poll_s
        self.claim_wait_s = claim_wait_s
        self.claim_pause_s = 0.0  # the last claim's retry_after_seconds
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
        self.pool = ThreadPoolExecutor(max_workers=COMMAND_WORKERS, thread_name_prefix="agent")
        self.urgent_pool = ThreadPoolExecutor(
            max_workers=URGENT_WORKERS, thread_name_prefix="agent-urgent"
        )
        self.poll_pool = ThreadPoolExecutor(max_workers=POLL_WORKERS, thread_name_prefix="poll")
        self.working = 0  # commands being carried out now
        self._work_done = threading.Condition()
        self.threads: list[threading.Thread] = []
        # Push: each device's event stream (if it has one); polling runs beside it.
        self.wake = threading.Event()  # an event is waiting: the push loop sends it now
        self.sse = sse
        #: The least silence after which a stream is not live (two intervals, if longer).
        self.stream_idle_floor_s = stream_idle_s
        self.streams: dict[str, EventStream] = {}
        self.chip_watch = {serial: ChipWatch() for serial in self.bmcs}
        self.leak_watch = {d.serial: LeakWatch() for d in devices if d.kind != wire.DeviceKind.PDU}
        self.pushed_at: dict[str, float] = {}  # a BMC's last MetricReport over its stream

    # --- devices → outbox ----------------------------------------------------------------

    def stream_idle_s(self) -> float:
        """Silence after which a stream is not live: two report intervals, at least the floor
        (a device's keep-alives come every 15 s or so)."""
        return max(2 * self.interval_s, self.stream_idle_floor_s)

    def streaming(self, device: Device) -> bool:
        """Whether the device's event stream is open and heard from lately."""
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
        report = chip_report(device.serial, body, device)
        self._chip_events(device, report)
        self.outbox.add_reports([report])
        self.stats["polled"] += 1
        self.pushed_at[device.serial] = time.monotonic()

    def _chip_events(self, device: Device, report: dict) -> None:
        """What the chip report shows new, sent whether or not the stream told it too (the
        control plane keeps one open fault per chip and rule)."""
        self.add_events(self.chip_watch[device.serial].see(report))

    def _poll_failed(self, device: Device, what: str, exc: Exception) -> None:
        self.stats["poll_errors"] += 1
        if isinstance(exc, DeviceError | KeyError | ValueError | IndexError):
            log.warning("%s of %s failed: %s", what, device.serial, exc)
        else:  # a bug or a device far off the standard: the trace says which
            log.exception("%s of %s failed", what, device.serial)

    def _poll(self, device: Device) -> dict | None:
        """One device's report (unless its stream brought this interval's), and its leak
        detectors, each on its own: a leak read that fails loses no report, and the other
        way round."""
        report = None
        pushed = self.pushed_at.get(device.serial)
        if pushed is None or time.monotonic() - pushed >= self.interval_s:
            try:
                report = POLLERS[device.kind](device)
            except Exception as exc:  # one device never stops the round
                self._poll_failed(device, "poll", exc)
        watch = self.leak_watch.get(device.serial)
        if watch is not None:
            try:
                stamp = str(report["Timestamp"]) if report else now_iso()
                self.add_events(watch.poll(device, stamp, True))
            except Exception as exc:
                self._poll_failed(device, "leak detectors", exc)
        return report

    def poll_once(self) -> int:
        polled = list(zip(self.devices, self.poll_pool.map(self._poll, self.devices), strict=True))
        reports = []
        for device, report in polled:
            if report is None:
                continue
            try:
                if device.serial in self.chip_watch:
                    self._chip_events(device, report)
                self._events_from(report)
            except Exception as exc:  # a report we cannot read: still sent
                self._poll_failed(device, "events", exc)
            reports.append(report)
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
            if was and not reading[FeedReading.UP]:
                self.add_events(
                    [
                        wire.Event(
                            source=source,
                            kind=wire.EventKind.FEED_LOSS,
                            feed=feed,
                            message=f"power feed {feed} lost",
                            timestamp=report["Timestamp"],
                            device_kind=wire.DeviceKind.PDU,
                        )
                    ]
                )

    def _poll_loop(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self.poll_once()
            except Exception:  # e.g. the outbox's disk: try again next round
                self.stats["poll_errors"] += 1
                log.exception("poll round failed")
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
        for stream in self.streams.values():
            stream.idle_s = self.stream_idle_s()
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
        """Send what waits: events first, and again before every batch of reports, so a
        fault never queues behind a telemetry backlog; False if the control plane is away."""
        if not self._push_events():
            return False
        stale = self.allowed_metrics is None or time.monotonic() - self.config_at > CONFIG_EVERY_S
        # Without ever hearing which telemetry may leave, nothing leaves (fail closed).
        if stale and not self.refresh_config() and self.allowed_metrics is None:
            return False
        while not self.stop.is_set():
            if not self._push_events():
                return False
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
        return True

    def _push_events(self) -> bool:
        """Every waiting event, leaks first in requests of their own (nothing else can hold
        up an isolation); False if the control plane is away."""
        for kind in (EventKind.LEAK, None):
            while not self.stop.is_set():
                rows = self.outbox.oldest_events(MAX_EVENT_BATCH, kind=kind)
                if not rows:
                    break
                if not self._send_events(rows):
                    return False
        return True

    def _send_events(self, rows: list[tuple[int, wire.Event]]) -> bool:
        """One request; if the control plane refuses it (a 4xx: one bad event refuses the
        whole batch), each event alone, so only the refused ones are dropped."""
        try:
            response = self.http.post(
                wire.api_url(self.base, wire.EVENTS_PATH),
                data=_json(wire.EventBatch(events=[body for _, body in rows])),
                headers=JSON,
                timeout=30,
            )
        except requests.RequestException as exc:
            log.info("control plane unreachable (events): %s", exc)
            return False
        if response.status_code >= 500 or response.status_code in (401, 429):
            log.warning("events not taken: %s", response.status_code)
            return False
        if response.status_code == 200 or len(rows) == 1:
            if response.status_code != 200:
                self.stats["events_refused"] = self.stats.get("events_refused", 0) + 1
                log.error(
                    "event refused, dropped: %s %s: %s",
                    response.status_code,
                    json.dumps(rows[0][1])[:300],
                    response.text[:300],
                )
            else:
                self.stats["events_sent"] = self.stats.get("events_sent", 0) + len(rows)
            self.outbox.delete_events([row_id for row_id, _ in rows])
            return True
        log.warning("events batch refused (%s); sending each alone", response.status_code)
        return all(self._send_events([row]) for row in rows)

    def _push_loop(self) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            self.wake.clear()
            try:
                pushed = self.push_once()
            except Exception:  # e.g. an answer that is not JSON: next round
                log.exception("push failed")
                pushed = False
            if pushed:
                backoff = 1.0
                self.wake.wait(min(1.0, self.interval_s))  # a new event cuts this short
            else:
                # The control plane is failing: a new event does not cut the backoff short.
                self.stats["push_failures"] = self.stats.get("push_failures", 0) + 1
                self.stop.wait(backoff)
                backoff = min(backoff * 2, PUSH_BACKOFF_MAX_S)

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
            self.dispatch(command)
        # The control plane had no thread to wait with: come back later, not at once.
        self.claim_pause_s = float(answer.get("retry_after_seconds", 0.0))
        return len(commands)

    def dispatch(self, command: wire.ClaimedCommand) -> None:
        """Carry a command out on a worker: an isolation on one of its own, at once, however
        many flashes hold the others."""
        (self.urgent_pool if urgent(command) else self.pool).submit(self._carry_out, command)

    def _carry_out(self, command: wire.ClaimedCommand) -> None:
        """Carry it out and queue its result; whatever goes wrong is a failed result, never a
        command left to expire."""
        with self._work_done:
            self.working += 1
        try:
            outcome = self._outcome(command)
        except Exception as exc:  # a bug must still answer the control plane
            log.exception("command %s (%s) failed", command.get("id"), command.get("kind"))
            outcome = (False, {}, f"agent error: {type(exc).__name__}: {exc}")
        finally:
            with self._work_done:
                self.working -= 1
                self._work_done.notify_all()
        ok, result, error = outcome
        error = error[: wire.MAX_ERROR_LENGTH]
        self.results.put(wire.BatchOutcome(id=command["id"], ok=ok, result=result, error=error))

    def _outcome(self, command: wire.ClaimedCommand) -> tuple[bool, dict, str]:
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
        return outcome

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
            try:
                self.send_results(batch)
            except Exception:  # those results expire; the loop goes on
                log.exception("results for %s not sent", [r["id"] for r in batch])

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
            try:
                claimed = self.claim_once()
            except Exception:  # e.g. an answer not of the wire's shape
                log.exception("claim failed")
                claimed = -1
            if claimed < 0:
                self.stop.wait(2.0)
            elif claimed == 0 and self.claim_pause_s > 0:
                self.stop.wait(min(self.claim_pause_s, wire.MAX_CLAIM_WAIT_SECONDS))

    # --- lifecycle -----------------------------------------------------------------------

    def start_streams(self) -> None:
        """An event stream per device that offers one (each its own thread)."""
        for device in self.devices:
            if device.serial not in self.streams:
                self.streams[device.serial] = EventStream(
                    device,
                    self.add_events,
                    self._pushed_report,
                    stop=self.stop,
                    idle_s=self.stream_idle_s(),
                ).start()

    def start(self) -> Agent:
        if self.sse:
            self.start_streams()
        for target in (self._poll_loop, self._push_loop, self._command_loop, self.result_loop):
            thread = threading.Thread(target=target, daemon=True, name=target.__name__)
            thread.start()
            self.threads.append(thread)
        return self

    def shutdown(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Stop the loops and streams, give commands in flight a moment, then delete each
        device's session (a BMC has few). A device closed refuses to log in again, so work
        that outlives the grace cannot leave a session behind."""
        self.stop.set()
        self.wake.set()
        deadline = time.monotonic() + grace_s
        for stream in self.streams.values():
            stream.close()
        for stream in self.streams.values():
            stream.join(max(0.0, deadline - time.monotonic()))
        for pool in (self.pool, self.urgent_pool, self.poll_pool):
            pool.shutdown(wait=False, cancel_futures=True)
        with self._work_done:
            while self.working and (left := deadline - time.monotonic()) > 0:
                self._work_done.wait(left)
        for thread in self.threads:  # the poll loop's round (the others reach no device)
            if thread.name == self._poll_loop.__name__:
                thread.join(max(0.0, deadline - time.monotonic()))
        for device in self.devices:
            device.close()
