"""More long-polling site agents than the web process has threads, and the API still answers
(issue 18 item 2), for real: gunicorn's gthread worker with 4 threads, and 8 site agents'
command loops (the real ``Agent``, each its own HTTP session). Only
AGENT_CLAIM_WAITS_MAX_PER_PROCESS of them wait on a thread; the rest are answered at once with
``retry_after_seconds`` and come back after it, so they neither hold a thread nor spin. A
command queued meanwhile still reaches its site's agent within about a second."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from django.conf import settings

from factory import wire
from factory.agents import services as agents
from factory.agents.choices import CommandState
from factory.agents.models import AgentCommand
from factory.siteagent.agent import Agent
from factory.siteagent.outbox import Outbox
from tests.support.fleet import build_fleet, client_for
from tests.support.processes import app_env, gunicorn
from tests.support.telemetry import CTX

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
THREADS = 4
WAITS = 2  # AGENT_CLAIM_WAITS_MAX_PER_PROCESS
AGENTS = 8  # twice the threads
CLAIM_WAIT = 8.0


@pytest.fixture
def server(transactional_db, tmp_path):
    env = app_env(settings.REDIS_URL, AGENT_CLAIM_WAITS_MAX_PER_PROCESS=str(WAITS))
    with gunicorn(env, tmp_path / "gunicorn.log", workers=1, threads=THREADS) as url:
        yield url


class Watched:
    """A real site agent's command loop (``Agent._command_loop``, devices none: a command it
    gets fails at once), each claim's answer and time taken recorded off its HTTP session."""

    def __init__(self, url: str, token: str, outbox: Path) -> None:
        self.agent = Agent(
            control_plane=url,
            token=token,
            devices=[],
            outbox=Outbox(str(outbox)),
            claim_wait_s=CLAIM_WAIT,
        )
        self.answers: list[tuple[float, dict]] = []  # (seconds taken, body)
        self.errors: list[str] = []
        self.agent.http.hooks["response"].append(self._record)
        self.thread = threading.Thread(target=self.agent._command_loop, daemon=True)

    def _record(self, response: requests.Response, *args, **kwargs) -> None:
        if not response.url.endswith(wire.CLAIM_PATH):
            return
        if response.status_code != 200:
            self.errors.append(f"{response.status_code} {response.text[:200]}")
        else:
            self.answers.append((response.elapsed.total_seconds(), response.json()))


def test_more_long_polling_agents_than_threads_leave_the_api_answering(server, tmp_path):
    fleet = build_fleet()
    site = fleet.sites["alpha"]
    tokens = [agents.issue_agent(site, f"poller-{i}", CTX)[1] for i in range(AGENTS)]
    person = client_for(fleet.people["provider_admin"])._credentials["HTTP_AUTHORIZATION"]
    pollers = [Watched(server, token, tmp_path / f"outbox-{i}") for i, token in enumerate(tokens)]
    for poller in pollers:
        poller.thread.start()
    try:
        time.sleep(2.5)  # every agent has claimed; those turned away came back at least once
        # The API answers while agents outnumber the threads: health, a person's read, a write.
        took = []
        for _ in range(10):
            started = time.monotonic()
            assert requests.get(f"{server}/healthz", timeout=5).status_code == 200
            sites = requests.get(
                f"{server}/api/v1/sites/", headers={"Authorization": person}, timeout=5
            )
            assert sites.status_code == 200, sites.text
            took.append(time.monotonic() - started)
        assert max(took) < 1.0, took

        # A command queued now is handed to one of the site's agents within about a second:
        # a waiting one sees it on its next look, a turned-away one on its next claim.
        command = agents.submit(site_id=site.pk, kind=wire.CommandKind.RESET)
        queued = time.monotonic()
        deadline = queued + 5
        while time.monotonic() < deadline:
            if AgentCommand.objects.get(pk=command.pk).state == CommandState.CLAIMED:
                break
            time.sleep(0.05)
        assert AgentCommand.objects.get(pk=command.pk).state == CommandState.CLAIMED
        assert time.monotonic() - queued < 2.0
    finally:
        for poller in pollers:
            poller.agent.stop.set()
    # Each waiting long-poll ends when its command arrives or at its wait; give them the time.
    for poller in pollers:
        poller.thread.join(timeout=CLAIM_WAIT + 5)
        poller.agent.shutdown(grace_s=1)
    assert not any(p.thread.is_alive() for p in pollers)
    assert not [e for p in pollers for e in p.errors]

    answers = [a for p in pollers for a in p.answers]
    turned_away = [a for a in answers if "retry_after_seconds" in a[1]]
    waited = [a for a in answers if "retry_after_seconds" not in a[1]]
    # Never more than WAITS at once held a thread: the rest were answered at once.
    assert turned_away and all(took < 1.0 for took, _ in turned_away), turned_away[:3]
    assert all(a[1]["retry_after_seconds"] == agents.CLAIM_BUSY_RETRY_SECONDS for a in turned_away)
    assert all(not a[1]["commands"] for a in turned_away)
    assert len([took for took, _ in waited if took > 1.0]) >= WAITS, waited  # they waited
    delivered = Counter(c["id"] for _, body in answers for c in body["commands"])
    assert delivered == {str(command.pk): 1}  # handed out once
    # Turned-away agents came back after the pause, not at once: no spinning.
    per_agent = [len(p.answers) for p in pollers]
    assert max(per_agent) <= 2.5 / agents.CLAIM_BUSY_RETRY_SECONDS + 6, per_agent
