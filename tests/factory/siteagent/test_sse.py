"""Push: a fault the device raises reaches the agent's outbox within a second over the
device's event stream; with the stream off (or a vendor without one) polling finds it within
two poll intervals. The classification of Redfish Event records is a pure function."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from factory.siteagent.agent import Agent
from factory.siteagent.devices import Device
from factory.siteagent.outbox import Outbox
from factory.siteagent.sse import classify, parse
from factory.wire import DeviceKind, EventKind
from tests.factory.siteagent.sites import PASSWORD, USERNAME, site

CHIP = "/redfish/v1/Systems/UltraServer/Processors/Chip7"
#: Where the device's collections put each chip (the agent reads them: ``devices.chip_of``).
POSITIONS = {CHIP: 7, "/redfish/v1/Systems/S/Memory/HBM3": 3}


def chip_of(origin: str) -> int | None:
    return next((i for uri, i in POSITIONS.items() if origin.startswith(uri)), None)


def record(origin: str, severity: str = "Critical", **extra: object) -> dict:
    return {
        "MessageId": f"ResourceEvent.1.4.ResourceStatusChanged{severity}",
        "MessageSeverity": severity,
        "Message": "it changed",
        "OriginOfCondition": {"@odata.id": origin},
        "EventTimestamp": "2026-11-28T10:00:00Z",
        **extra,
    }


@pytest.mark.parametrize(
    ("origin", "severity", "kind", "expected"),
    [
        (CHIP, "Critical", DeviceKind.BMC, {"kind": EventKind.CHIP_FAILURE, "chip": 7}),
        (CHIP, "Warning", DeviceKind.BMC, None),
        (CHIP, "OK", DeviceKind.BMC, None),
        (
            "/redfish/v1/Systems/S/Memory/HBM3",
            "Critical",
            "bmc",
            {"kind": "hbm-failure", "chip": 3},
        ),
        ("/redfish/v1/Systems/S/Memory/HBM3", "Warning", "bmc", None),  # an ECC storm
        (f"{CHIP}/Ports/Link2", "Critical", "bmc", {"kind": "link-down", "chip": 7}),
        (f"{CHIP}/Ports/Link2", "Warning", "bmc", None),  # a flap
        ("/redfish/v1/Chassis/Tray3/LeakDetectors/Plate", "Critical", "bmc", {"kind": "leak"}),
        (
            "/redfish/v1/PowerEquipment/RackPDUs/R01-A/Mains/AC1",
            "Critical",
            "pdu",
            {"kind": "feed-loss", "feed": "R01-A"},
        ),
        ("/redfish/v1/PowerEquipment/RackPDUs/R01-A/Mains/AC1", "Warning", "pdu", None),
        (
            "/redfish/v1/Chassis/CDU/Sensors/SupplyTemp",
            "Warning",
            "cdu",
            {"kind": "coolant-excursion"},
        ),
        (
            "/redfish/v1/ThermalEquipment/CDUs/1/LeakDetection/LeakDetectors/Tray",
            "Critical",
            "cdu",
            {"kind": "leak"},
        ),
        ("/redfish/v1", "Critical", "bmc", None),
    ],
)
def test_event_records_are_classified_by_origin_and_severity(origin, severity, kind, expected):
    event = classify(record(origin, severity), "SRC-1", kind, chip_of=chip_of)
    if expected is None:
        assert event is None
        return
    assert event is not None
    assert {k: event[k] for k in expected} == expected
    assert (event["source"], event["timestamp"]) == ("SRC-1", "2026-11-28T10:00:00Z")
    assert event["device_kind"] == kind


def test_without_its_position_an_event_names_no_chip():
    """The Id's digits are not trusted (a vendor may number from 1): no position, no chip."""
    event = classify(record(CHIP), "SRC-1", DeviceKind.BMC)
    assert event is not None and event["kind"] == EventKind.CHIP_FAILURE and "chip" not in event


def test_a_feed_is_named_as_the_agent_knows_it():
    event = classify(
        record("/redfish/v1/PowerEquipment/RackPDUs/2/Mains/1"),
        "R01-PDU",
        "pdu",
        lambda origin: "R01-B" if "/RackPDUs/2" in origin else None,
    )
    assert event is not None and event["feed"] == "R01-B"


def test_server_sent_events_are_parsed_by_id_and_data():
    lines = [": keep-alive", "", "id: 4", 'data: {"a":', "data: 1}", "", "data: x", ""]
    assert list(parse(iter(lines))) == [("4", '{"a":\n1}'), ("4", "x")]


# --- end to end, against the simulator -----------------------------------------------------


def agent_for(server, tmp_path, *, sse: bool, interval_s: float = 1.0) -> Agent:
    listing = server.listing()
    devices = [
        Device(d["kind"], d["serial"], d["url"], USERNAME, PASSWORD) for d in listing["devices"]
    ]
    return Agent(
        control_plane="http://127.0.0.1:9",  # nobody: events wait in the outbox
        token="unused",
        devices=devices,
        outbox=Outbox(str(tmp_path / "outbox.sqlite3")),
        interval_s=interval_s,
        sse=sse,
    )


def wait_for(agent: Agent, kind: str, timeout_s: float) -> tuple[float, dict]:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        for _, event in agent.outbox.oldest_events(100):
            if event["kind"] == kind:
                return time.monotonic() - started, event
        time.sleep(0.02)
    raise AssertionError(f"no {kind} event within {timeout_s} s")


def inject(server, kind: str, target: str, **fields: object) -> None:
    answer = requests.post(
        f"{server.control_url}/sim/faults",
        json={"kind": kind, "target": target, **fields},
        timeout=5,
    )
    assert answer.status_code == 201, answer.text


def run_polling(agent: Agent) -> None:
    threading.Thread(target=agent._poll_loop, daemon=True).start()


def test_a_chip_fault_reaches_the_outbox_within_a_second_over_sse(tmp_path):
    with site("factory") as server:
        agent = agent_for(server, tmp_path, sse=True, interval_s=30.0)
        agent.start_streams()
        bmc = next(d for d in agent.devices if d.kind == DeviceKind.BMC)
        try:
            deadline = time.monotonic() + 5
            while not agent.streaming(bmc) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert agent.streaming(bmc)
            inject(server, EventKind.CHIP_FAILURE, bmc.serial, chip=5)
            took, event = wait_for(agent, EventKind.CHIP_FAILURE, 1.0)
            assert (event["source"], event["chip"]) == (bmc.serial, 5)
            assert took < 1.0
            assert agent.wake.is_set()  # the push loop is told at once
            inject(server, EventKind.LEAK, bmc.serial)
            wait_for(agent, EventKind.LEAK, 1.0)
        finally:
            agent.shutdown()


@pytest.mark.parametrize(("flavour", "sse"), [("factory", False), ("contoso", True)])
def test_without_a_stream_polling_finds_faults_within_two_intervals(tmp_path, flavour, sse):
    with site(flavour) as server:
        agent = agent_for(server, tmp_path, sse=sse, interval_s=1.0)
        if sse:
            agent.start_streams()  # contoso offers no stream: the agent polls instead
        bmc = next(d for d in agent.devices if d.kind == DeviceKind.BMC)
        run_polling(agent)
        try:
            time.sleep(1.5)  # a first poll: the baseline
            assert not agent.streaming(bmc)
            if sse:
                assert agent.streams[bmc.serial].offered is False
            inject(server, EventKind.CHIP_FAILURE, bmc.serial, chip=2)
            _, event = wait_for(agent, EventKind.CHIP_FAILURE, 2.0)
            assert event["chip"] == 2
            inject(server, EventKind.LEAK, bmc.serial)
            wait_for(agent, EventKind.LEAK, 2.0)
            kinds = [e["kind"] for _, e in agent.outbox.oldest_events(100)]
            assert kinds.count(EventKind.CHIP_FAILURE) == 1  # told once, not every poll
        finally:
            agent.shutdown()


def test_a_dropped_stream_is_resubscribed_and_delivers_again(tmp_path):
    with site("factory") as server:
        agent = agent_for(server, tmp_path, sse=True, interval_s=30.0)
        agent.start_streams()
        bmc = next(d for d in agent.devices if d.kind == DeviceKind.BMC)
        stream = agent.streams[bmc.serial]
        try:
            deadline = time.monotonic() + 5
            while not stream.live and time.monotonic() < deadline:
                time.sleep(0.02)
            assert stream.live
            # The BMC ends the stream (an administrator deletes its EventDestination).
            subs = requests.get(
                f"{bmc.url}/redfish/v1/EventService/Subscriptions",
                auth=(USERNAME, PASSWORD),
                timeout=5,
            ).json()["Members"]
            for member in subs:
                requests.delete(
                    f"{bmc.url}{member['@odata.id']}", auth=(USERNAME, PASSWORD), timeout=5
                )
            deadline = time.monotonic() + 5
            while stream.connects < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert stream.connects >= 2  # resubscribed
            while not stream.live and time.monotonic() < deadline:
                time.sleep(0.02)
            inject(server, EventKind.CHIP_FAILURE, bmc.serial, chip=9)
            _, event = wait_for(agent, EventKind.CHIP_FAILURE, 1.0)
            assert event["chip"] == 9
        finally:
            agent.shutdown()
