"""The site agent reports command results in batches, through the real endpoints."""

from __future__ import annotations

import threading
import time

import pytest

from factory import wire
from factory.agents import services as agents
from factory.agents.models import AgentCommand
from factory.siteagent.agent import Agent
from factory.siteagent.outbox import Outbox
from factory.wire import CommandKind, HardwareState
from tests.support.fleet import CTX, build_fleet

RESET = CommandKind.RESET

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def site_agent(live_server, tmp_path):
    fleet = build_fleet()
    site = fleet.sites["alpha"]
    _, token = agents.issue_agent(site, "results", CTX)
    agent = Agent(
        control_plane=live_server.url,
        token=token,
        devices=[],  # no BMC: every command fails at once, which is a result like any other
        outbox=Outbox(str(tmp_path / "outbox.sqlite3")),
    )
    return site, fleet.servers["alpha"], agent


def test_results_that_finish_together_share_a_request(live_server, tmp_path):
    site, server, agent = site_agent(live_server, tmp_path)
    ids = [
        agents.submit(site_id=site.pk, kind=RESET, ultraserver_id=server.pk).pk for _ in range(5)
    ]
    sender = threading.Thread(target=agent.result_loop, daemon=True)
    sender.start()
    try:
        assert agent.claim_once(wait_s=0) == 5
        deadline = time.monotonic() + 20
        while AgentCommand.objects.filter(pk__in=ids, state="failed").count() < 5:
            assert time.monotonic() < deadline, "results did not arrive"
            time.sleep(0.05)
    finally:
        agent.shutdown()
        sender.join(timeout=5)
    for command in AgentCommand.objects.filter(pk__in=ids):
        assert "no BMC" in command.error
    assert 1 <= agent.stats["result_posts"] < 5  # batched, not one request per result


def test_a_refused_batch_is_sent_one_by_one_so_the_rest_land(live_server, tmp_path):
    site, server, agent = site_agent(live_server, tmp_path)
    first, second = (
        agents.submit(site_id=site.pk, kind=RESET, ultraserver_id=server.pk) for _ in range(2)
    )
    token = agent.http.headers[wire.AUTH_HEADER].removeprefix(wire.authorization(""))
    site_agent_row = agents.authenticate_agent(token)
    agents.claim(site_agent_row, limit=10)
    on = {HardwareState.POWER_STATE: "On"}
    agents.complete(site_agent_row, first.pk, ok=True, result=on)
    batch = [
        wire.BatchOutcome(id=str(first.pk), ok=False, result={}, error="contradicts"),  # a 409
        wire.BatchOutcome(id=str(second.pk), ok=True, result=on, error=""),
    ]
    agent.send_results(batch)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, second.state) == ("succeeded", "succeeded")
    assert second.result == on
