"""A long-poll waits only while its web process has a long-poll slot to spare
(``AGENT_CLAIM_WAITS_MAX_PER_PROCESS``); past it the claim is answered at once, with what is
queued or with ``retry_after_seconds``. The live proof with gunicorn and real agents is
tests/e2e/test_agent_long_poll_live.py."""

from __future__ import annotations

import time

import pytest

from factory import wire
from factory.agents import services as agents
from tests.support.api import gateway
from tests.support.telemetry import agent_client

pytestmark = pytest.mark.django_db


def claim(client, wait: float):
    started = time.monotonic()
    response = client.post(
        gateway(wire.CLAIM_PATH),
        data=wire.ClaimRequest(limit=10, wait_seconds=wait),
        format="json",
    )
    assert response.status_code == 200, response.content
    return response.json(), time.monotonic() - started


@pytest.fixture
def every_slot_taken(settings):
    settings.AGENT_CLAIM_WAITS_MAX_PER_PROCESS = 1
    assert agents._waiting.take(1)  # another agent's long-poll, waiting in this process
    yield
    agents._waiting.give_back()


def test_a_claim_with_a_slot_waits_and_gives_it_back(fleet, settings):
    settings.AGENT_CLAIM_WAITS_MAX_PER_PROCESS = 1
    client, _ = agent_client(fleet.sites["alpha"])
    body, took = claim(client, 0.3)
    assert body == {"commands": []} and took >= 0.3
    assert agents.waiting_in_process() == 0


def test_past_the_cap_a_claim_does_not_wait_and_says_when_to_come_back(fleet, every_slot_taken):
    client, _ = agent_client(fleet.sites["alpha"])
    body, took = claim(client, 5.0)
    assert took < 1.0
    assert body == {"commands": [], "retry_after_seconds": agents.CLAIM_BUSY_RETRY_SECONDS}
    assert agents.waiting_in_process() == 1  # the other one's, not taken by this claim


def test_past_the_cap_what_is_queued_is_still_handed_out(fleet, every_slot_taken):
    site = fleet.sites["alpha"]
    command = agents.submit(site_id=site.pk, kind=wire.CommandKind.RESET)
    client, _ = agent_client(site)
    body, took = claim(client, 5.0)
    assert took < 1.0 and "retry_after_seconds" not in body
    assert [c["id"] for c in body["commands"]] == [str(command.pk)]


def test_a_claim_that_does_not_wait_takes_no_slot(fleet, every_slot_taken):
    client, _ = agent_client(fleet.sites["alpha"])
    body, _ = claim(client, 0)
    assert body == {"commands": []}
