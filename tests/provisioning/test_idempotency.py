"""Idempotency keys on ``POST /api/v1/workflows/``: simultaneous requests with one key all get
the same workflow (one 201, the rest 200 with the same body), never a 409 or a 500; the
``Idempotency-Key`` header is the body field's alias."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from provisioning.models import Workflow
from tests.provisioning.test_api import upgrade_body
from tests.support.api import assert_error_body
from tests.support.fleet import build_fleet
from tests.support.workflows import always_open, make_releases, put_in_service

pytestmark = pytest.mark.django_db


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_ten_simultaneous_requests_with_one_key_get_one_workflow():
    fleet = build_fleet()
    make_releases()
    server = put_in_service(fleet.servers["alpha"])
    always_open(fleet.sites["alpha"])
    clients = [fleet.client("provider_admin") for _ in range(10)]
    barrier = threading.Barrier(10)

    def request(i: int):
        try:
            barrier.wait(10)
            return clients[i].post(
                "/api/v1/workflows/", upgrade_body([server], idempotency_key="rollout-42")
            )
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(request, range(10)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 9 + [201], [r.content[:300] for r in responses]
    bodies = [r.json() for r in responses]
    assert len({b["id"] for b in bodies}) == 1
    assert all(b == bodies[0] for b in bodies)
    assert Workflow.objects.filter(idempotency_key="rollout-42").count() == 1
    assert Workflow.objects.count() == 1


def test_idempotency_key_header_is_an_alias_of_the_body_field(fleet, in_service):
    client = fleet.client("provider_admin")
    url = "/api/v1/workflows/"
    first = client.post(url, upgrade_body(in_service[:2]), HTTP_IDEMPOTENCY_KEY="hdr-1")
    assert first.status_code == 201, first.content
    assert first.json()["idempotency_key"] == "hdr-1"
    assert first["Location"] == f"http://testserver{url}{first.json()['id']}/"
    assert client.get(first["Location"])["ETag"] == first["ETag"]
    again = client.post(url, upgrade_body(in_service[:2], idempotency_key="hdr-1"))
    assert again.status_code == 200 and again.json() == first.json()
    assert "Location" not in again and again["ETag"] == first["ETag"]
    both = client.post(
        url, upgrade_body(in_service[:2], idempotency_key="hdr-1"), HTTP_IDEMPOTENCY_KEY="hdr-1"
    )
    assert both.status_code == 200 and both.json()["id"] == first.json()["id"]
    differ = client.post(
        url, upgrade_body(in_service[:2], idempotency_key="a"), HTTP_IDEMPOTENCY_KEY="b"
    )
    assert assert_error_body(differ, 400)["errors"][0]["field"] == "idempotency_key"
    reused = client.post(url, upgrade_body(in_service[2:3]), HTTP_IDEMPOTENCY_KEY="hdr-1")
    assert assert_error_body(reused, 409)["errors"][0]["code"] == "idempotency_key_reused"
    assert Workflow.objects.count() == 1
