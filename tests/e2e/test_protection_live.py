"""Protection as a real server gives it: HEAD then GET on one kept-alive connection (gunicorn's
gthread worker, what `make up` runs), and one rate limit shared by every web worker (Redis)."""

from __future__ import annotations

import uuid

import pytest
import requests
from django.conf import settings

from tenants.choices import Role
from tests.support.fleet import client_for, make_person
from tests.support.processes import app_env, gunicorn

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
LIMIT = 5


@pytest.fixture
def server(transactional_db, tmp_path):
    env = app_env(
        settings.REDIS_URL,
        RATE_LIMIT_TOKEN=f"{LIMIT}/hour",
        RATE_LIMIT_KEY_PREFIX=f"ratelimit-live-{uuid.uuid4().hex}",
    )
    with gunicorn(env, tmp_path / "gunicorn.log", workers=2, threads=2) as url:
        yield url


def bearer(user) -> dict[str, str]:
    return {"Authorization": client_for(user)._credentials["HTTP_AUTHORIZATION"]}


def test_head_then_get_on_one_kept_alive_connection(server):
    auth = bearer(make_person("head-viewer", Role.PROVIDER_ADMIN, is_staff=True))
    paths = ["/healthz", "/api/v1/racks/", "/api/v1/", "/console/login/", "/admin/login/"]
    with requests.Session() as session:
        for path in paths * 2:
            head = session.head(f"{server}{path}", headers=auth, timeout=10)
            get = session.get(f"{server}{path}", headers=auth, timeout=10)
            assert head.status_code == get.status_code == 200, path
            assert head.content == b""
            assert head.headers["Connection"] == "keep-alive", path
            assert int(head.headers["Content-Length"]) == len(get.content), path
        # One connection served them all.
        pool = next(iter(session.adapters["http://"].poolmanager.pools._container.values()))
        assert pool.num_connections == 1


def test_a_tokens_budget_is_shared_by_every_web_worker(server):
    auth = bearer(make_person("rate-viewer", Role.PROVIDER_ADMIN, is_staff=True))
    answers = []
    for _ in range(4 * LIMIT):  # a new connection each: both workers serve some
        answers.append(
            requests.get(
                f"{server}/api/v1/racks/", headers={**auth, "Connection": "close"}, timeout=10
            )
        )
    assert [a.status_code for a in answers] == [200] * LIMIT + [429] * (3 * LIMIT)
    assert [a.headers["RateLimit-Remaining"] for a in answers[:LIMIT]] == [
        str(n) for n in range(LIMIT - 1, -1, -1)
    ]
    refused = answers[-1]
    assert refused.json()["code"] == "throttled" and int(refused.headers["Retry-After"]) >= 1
