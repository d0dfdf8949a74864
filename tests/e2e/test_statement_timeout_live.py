"""A statement past the web tier's limit is cancelled in the database (issue 18 item 2), for
real: gunicorn with DATABASE_STATEMENT_TIMEOUT_MS, and a second PostgreSQL session holding a
lock the request's query must wait for (as a long migration or a runaway report would). The
request is answered within the limit, 503 with Retry-After and the error body naming the
rule, never a 500 or a hang; the worker then serves the next request; and the console says
the same in its own page."""

from __future__ import annotations

import time

import pytest
import requests
from django.conf import settings
from django.db import connection

from factory.inventory.models import Site
from tests.support.fleet import build_fleet, client_for
from tests.support.processes import app_env, gunicorn, other_session

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
LIMIT_MS = 700


@pytest.fixture
def server(transactional_db, tmp_path):
    env = app_env(settings.REDIS_URL, DATABASE_STATEMENT_TIMEOUT_MS=str(LIMIT_MS))
    with gunicorn(env, tmp_path / "gunicorn.log", workers=1, threads=2) as url:
        yield url


def test_a_request_past_the_limit_is_cancelled_and_answered_503(server):
    fleet = build_fleet()
    headers = {
        "Authorization": client_for(fleet.people["provider_admin"])._credentials[
            "HTTP_AUTHORIZATION"
        ]
    }
    sites = f"{server}/api/v1/sites/"
    assert requests.get(sites, headers=headers, timeout=10).status_code == 200
    with other_session() as holder:
        holder.execute(f'LOCK TABLE "{Site._meta.db_table}" IN ACCESS EXCLUSIVE MODE')
        started = time.monotonic()
        answer = requests.get(sites, headers=headers, timeout=10)
        took = time.monotonic() - started
        body = answer.json()
        assert answer.status_code == 503, (answer.status_code, body)
        assert body["code"] == "statement_timeout" and body["status"] == 503, body
        assert "cancelled" in body["message"]
        assert answer.headers["Retry-After"] == "5"
        assert LIMIT_MS / 1000 <= took < LIMIT_MS / 1000 + 3, took
        # the worker is free again at once: what does not touch the lock answers
        health = requests.get(f"{server}/healthz", timeout=5)
        assert health.status_code == 200
        holder.rollback()  # the lock released
    assert requests.get(sites, headers=headers, timeout=10).status_code == 200


def test_the_console_answers_a_cancelled_statement_with_its_503_page(client):
    fleet = build_fleet()
    client.force_login(fleet.people["provider_admin"])
    assert client.get("/console/").status_code == 200
    with connection.cursor() as cursor:  # this process's limit, as the web tier's settings set it
        cursor.execute(f"SET statement_timeout = {LIMIT_MS}")
    try:
        with other_session() as holder:
            holder.execute(f'LOCK TABLE "{Site._meta.db_table}" IN ACCESS EXCLUSIVE MODE')
            page = client.get("/console/")
            holder.rollback()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")
    assert page.status_code == 503
    html = page.content.decode()
    assert "<html" in html.lower() and "took longer than the database allows" in html
