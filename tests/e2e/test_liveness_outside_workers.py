"""Liveness answered outside the request worker pool (issue 18 item 2), for real: gunicorn with
the web tier's hooks (``-c python:factory.core.gunicorn_conf``), one gthread worker of two
threads, both held by API requests waiting on a table lock a second PostgreSQL session holds.
The API's own /healthz waits for a thread like any request and does not answer; the master's
health port answers at once, since the worker still beats. The worker frozen (SIGSTOP), its
heartbeat stops, and the health port says 503 within WEB_HEALTH_STALE_SECONDS."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests
from django.conf import settings

from factory.inventory.models import Site
from tests.support.fleet import build_fleet, client_for
from tests.support.processes import (
    app_env,
    children_of,
    free_port,
    gunicorn_server,
    other_session,
    until,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
STALE = 2.0


def answers(url: str, timeout: float) -> requests.Response | None:
    try:
        return requests.get(url, timeout=timeout)
    except requests.RequestException:
        return None


def test_liveness_answers_while_every_thread_is_busy_and_fails_when_the_worker_hangs(tmp_path):
    health_port = free_port()
    env = app_env(
        settings.REDIS_URL, WEB_HEALTH_PORT=str(health_port), WEB_HEALTH_STALE_SECONDS=str(STALE)
    )
    hooks = ("-c", "python:factory.core.gunicorn_conf")
    with gunicorn_server(env, tmp_path / "gunicorn.log", workers=1, threads=2, extra=hooks) as (
        url,
        master,
    ):
        health = f"http://127.0.0.1:{health_port}/healthz"
        first = until(lambda: answers(health, 2), 20, "the health port")
        assert first.status_code == 200
        assert first.json() == {"status": "ok", "workers_alive": 1, "workers": 1}
        fleet = build_fleet()
        person = client_for(fleet.people["provider_admin"])._credentials["HTTP_AUTHORIZATION"]
        busy: list[int] = []

        def wait_on_the_lock() -> None:
            answer = answers_with(f"{url}/api/v1/sites/", person)
            busy.append(answer)

        with other_session() as holder:
            holder.execute(f'LOCK TABLE "{Site._meta.db_table}" IN ACCESS EXCLUSIVE MODE')
            callers = [threading.Thread(target=wait_on_the_lock) for _ in range(2)]
            for caller in callers:
                caller.start()
            time.sleep(1.0)  # both threads of the worker in their requests, waiting
            assert answers(f"{url}/healthz", 2) is None  # the API's own: no thread to answer
            for _ in range(5):
                started = time.monotonic()
                live = answers(health, 2)
                assert live is not None and live.status_code == 200
                assert time.monotonic() - started < 0.5
            holder.rollback()
        for caller in callers:
            caller.join(timeout=30)
        assert busy == [200, 200]  # nothing lost: they were served once the lock went

        [worker] = children_of(master.proc.pid)
        os.kill(worker, signal.SIGSTOP)
        try:
            frozen = time.monotonic()
            down = until(
                # (a Response of a 5xx is falsy: hand back its body)
                lambda: (r := answers(health, 2)) is not None and r.status_code == 503 and r.json(),
                STALE + 5,
                "the health port saying 503",
            )
            assert down == {"status": "unavailable", "workers_alive": 0, "workers": 1}
            assert time.monotonic() - frozen >= STALE - 0.5
        finally:
            os.kill(worker, signal.SIGCONT)
        back = until(
            lambda: (r := answers(health, 2)) is not None and r.status_code == 200 and r,
            10,
            "the health port back to 200",
        )
        assert back.json()["workers_alive"] == 1


def answers_with(url: str, authorization: str) -> int:
    return requests.get(url, headers={"Authorization": authorization}, timeout=30).status_code
