"""Events reach the real control plane even when one of them is refused: leaks first, in a
request of their own; a refused batch is sent one by one and only the refused event dropped.
While the control plane fails, new events do not defeat the push loop's backoff."""

from __future__ import annotations

import threading
import time

import pytest

from factory import wire
from factory.agents import services as agents
from factory.siteagent.agent import Agent
from factory.siteagent.outbox import Outbox
from factory.telemetry.models import Fault
from factory.wire import EventKind, FaultRule
from tests.support.fleet import CTX, build_fleet

STAMP = "2026-11-28T10:00:00Z"


def event(source: str, kind: str, **extra: object) -> wire.Event:
    return wire.Event(source=source, kind=kind, timestamp=STAMP, message=kind, **extra)  # type: ignore[typeddict-item]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_one_refused_event_drops_only_itself_and_leaks_go_first(live_server, tmp_path):
    fleet = build_fleet()
    site, server = fleet.sites["alpha"], fleet.servers["alpha"]
    _, token = agents.issue_agent(site, "events", CTX)
    agent = Agent(
        control_plane=live_server.url,
        token=token,
        devices=[],
        outbox=Outbox(str(tmp_path / "outbox.sqlite3")),
    )
    agent.add_events(
        [
            event(server.serial, EventKind.CHIP_FAILURE, chip=1),
            event("NOT-AT-THIS-SITE", EventKind.CHIP_FAILURE, chip=2),  # refused: 400
            event(server.serial, EventKind.LEAK, device_kind=wire.DeviceKind.BMC),  # the newest
        ]
    )
    try:
        assert agent._push_events()
    finally:
        agent.shutdown(grace_s=0.5)
    assert agent.outbox.oldest_events(10) == []
    assert agent.stats["events_refused"] == 1
    chip = Fault.objects.get(ultraserver=server, rule=FaultRule.CHIP_DOWN)
    leak = Fault.objects.get(ultraserver=server, rule=FaultRule.LEAK)
    assert chip.chip_index == 1
    assert leak.pk < chip.pk  # sent first, though queued last


def test_new_events_do_not_cut_the_backoff_short_while_the_control_plane_fails(tmp_path):
    agent = Agent(
        control_plane="http://127.0.0.1:9",  # refused at once, every time
        token="unused",
        devices=[],
        outbox=Outbox(str(tmp_path / "outbox.sqlite3")),
    )
    pusher = threading.Thread(target=agent._push_loop, daemon=True)
    pusher.start()
    try:
        deadline = time.monotonic() + 3.2
        while time.monotonic() < deadline:
            agent.add_events([event("S", EventKind.CHIP_FAILURE, chip=0)])
            time.sleep(0.05)
        # Tries at 0, 1, 3 s (backoff 1, 2, 4...), not one per new event (60 of them).
        assert 2 <= agent.stats["push_failures"] <= 4, agent.stats
    finally:
        agent.shutdown(grace_s=0.5)
        pusher.join(2)
