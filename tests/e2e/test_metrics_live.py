"""The request counters as a real server keeps them: two gunicorn workers in prometheus_client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), so a scrape that lands on either worker counts
the requests both served."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from tenants.choices import Role
from tests.support.fleet import client_for, make_person
from tests.support.processes import app_env, gunicorn

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
REQUESTS = 40


def favicon_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "factory_http_requests_total" and sample.labels == {
                "route": "favicon",
                "method": "GET",
                "status": "200",
            }:
                return sample.value
    return 0.0


def test_every_worker_answers_with_the_sum_of_all_workers_counts(transactional_db, tmp_path):
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = app_env(settings.REDIS_URL, PROMETHEUS_MULTIPROC_DIR=str(shared))
    token = client_for(make_person("scraper", Role.PROVIDER_ADMIN, is_staff=True))
    auth = {"Authorization": token._credentials["HTTP_AUTHORIZATION"], "Connection": "close"}
    with gunicorn(env, tmp_path / "gunicorn.log", workers=2) as url:

        def fetch(_: int) -> requests.Response:
            return requests.get(f"{url}/favicon.ico", headers={"Connection": "close"}, timeout=10)

        # Eight at once: both (single-threaded) workers must take some.
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(fetch, range(REQUESTS)))
        assert [a.status_code for a in answers] == [200] * REQUESTS
        scrapes = [requests.get(f"{url}/metrics", headers=auth, timeout=30) for _ in range(6)]
    assert [s.status_code for s in scrapes] == [200] * 6
    assert [favicon_count(s.text) for s in scrapes] == [REQUESTS] * 6
    writers = {path.stem.rsplit("_", 1)[-1] for path in shared.glob("*.db")}
    assert len(writers) == 2, writers  # both workers counted some of them
