"""Keyset pages beside limit/offset (``factory.core.pagination``): ``?cursor=`` starts a walk,
``next`` and ``previous`` carry opaque cursors, rows added between pages are neither skipped
nor repeated, any ``?ordering=`` is made unique by the primary key, and a page costs the same
queries however far into the list it is."""

from __future__ import annotations

import itertools
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from factory.inventory.models import Chip, UltraServer
from tenants.models import AuditEvent
from tests.support.api import assert_error_body
from tests.support.fleet import make_server
from tests.support.schema import assert_conforms, openapi_schema

_serial = itertools.count()


def _servers(fleet, n: int, prefix: str = "CUR") -> list[UltraServer]:
    """``n`` unracked UltraServers of tenant alpha (no position: a null sort key)."""
    return [
        make_server(f"{prefix}-{next(_serial):04d}", "trn2-ultraserver", tenant=fleet.alpha)
        for _ in range(n)
    ]


def _cursor(link: str | None) -> str | None:
    if link is None:
        return None
    return parse_qs(urlsplit(link).query, keep_blank_values=True)["cursor"][0]


def _walk(client, url: str, *, between=None, limit: int = 5) -> tuple[list[dict], int]:
    """Every row of a cursor walk, following ``next``; ``between(page)`` runs before each next
    page is asked for."""
    rows, pages = [], 0
    link = f"{url}{'&' if '?' in url else '?'}limit={limit}&cursor="
    while link is not None:
        answer = client.get(link)
        assert answer.status_code == 200, answer.content
        body = answer.json()
        assert set(body) == {"next", "previous", "results"}
        assert len(body["results"]) <= limit
        rows += body["results"]
        pages += 1
        if between is not None and body["next"]:
            between(pages)
        link = body["next"]
        assert pages < 100, "the walk does not end"
    return rows, pages


def test_a_walk_sees_every_row_once_while_rows_are_inserted_before_and_after_it(fleet):
    _servers(fleet, 17)
    client = fleet.client("provider_admin")
    before = list(UltraServer.objects.order_by("serial").values_list("serial", flat=True))
    inserted: list[str] = []

    def insert(page: int) -> None:  # one row sorting first, one sorting last, each page
        for prefix in ("AAA", "ZZZ"):
            inserted.append(make_server(f"{prefix}-{page:03d}", "trn2-ultraserver").serial)

    rows, pages = _walk(client, "/api/v1/ultraservers/", between=insert)
    serials = [r["serial"] for r in rows]
    assert pages > 2
    assert len(serials) == len(set(serials)), "a row was shown twice"
    assert serials == sorted(serials), "out of order"
    assert set(before) <= set(serials), "a row was skipped"
    # Rows inserted behind the walk's position are not shown; those ahead of it are.
    assert not any(s.startswith("AAA") for s in serials)
    assert sum(s.startswith("ZZZ") for s in serials) == len(inserted) // 2


def test_offset_pages_repeat_a_row_in_the_same_situation(fleet):
    """What the cursor is for: the same inserts shift limit/offset pages (this test's twin
    above would fail the same way without keyset pages)."""
    _servers(fleet, 12)
    client = fleet.client("provider_admin")
    first = client.get("/api/v1/ultraservers/?limit=5").json()
    make_server("AAA-000", "trn2-ultraserver")
    second = client.get(first["next"]).json()
    assert first["results"][-1]["serial"] == second["results"][0]["serial"]


@pytest.mark.parametrize(
    "ordering",
    ["-lifecycle_state", "position", "-position", "lifecycle_state,-created_at", "-serial"],
)
def test_any_ordering_is_walked_completely_by_its_key_and_the_primary_key(fleet, ordering):
    servers = _servers(fleet, 9)
    # Mixed keys: some racked (a position), some not (null), states differing.
    UltraServer.objects.filter(pk__in=[s.pk for s in servers[:4]]).update(lifecycle_state="ready")
    client = fleet.client("provider_admin")
    rows, pages = _walk(client, f"/api/v1/ultraservers/?ordering={ordering}", limit=4)
    ids = [r["id"] for r in rows]
    assert pages >= 3
    assert len(ids) == len(set(ids)) == UltraServer.objects.count()
    # The walk's order is the list's (nulls as PostgreSQL sorts them), ties broken by id.
    expected = UltraServer.objects.order_by(*ordering.split(","), "id")
    assert ids == list(expected.values_list("id", flat=True))


def test_previous_links_walk_back_over_the_same_pages(fleet):
    _servers(fleet, 11)
    client = fleet.client("provider_admin")
    forward = []
    body = client.get("/api/v1/ultraservers/?limit=4&cursor=").json()
    assert body["previous"] is None
    forward.append([r["id"] for r in body["results"]])
    while body["next"]:
        body = client.get(body["next"]).json()
        forward.append([r["id"] for r in body["results"]])
    assert body["previous"] is not None
    backward = [[r["id"] for r in body["results"]]]
    while body["previous"]:
        body = client.get(body["previous"]).json()
        backward.append([r["id"] for r in body["results"]])
    assert backward[::-1] == forward


def test_chips_and_audit_events_page_by_cursor(fleet):
    client = fleet.client("provider_admin")
    chips, _ = _walk(client, "/api/v1/chips/", limit=50)
    assert [c["id"] for c in chips] == list(
        Chip.objects.order_by("ultraserver_id", "index").values_list("id", flat=True)
    )
    events, pages = _walk(client, "/api/v1/audit-events/", limit=7)
    assert pages > 2
    assert [e["id"] for e in events] == list(
        AuditEvent.objects.order_by("-occurred_at", "-id").values_list("id", flat=True)
    )


def test_a_page_costs_the_same_queries_wherever_it_is(fleet, django_assert_num_queries):
    _servers(fleet, 3)
    client = fleet.client("provider_admin")
    url = "/api/v1/chips/?limit=40&cursor="
    client.get(url)  # warm: the token's last-used stamp, content types
    with CaptureQueriesContext(connection) as first:
        body = client.get(url).json()
    assert not any("COUNT(" in q["sql"].upper() for q in first.captured_queries)
    for _ in range(3):
        assert body["next"]
        with django_assert_num_queries(len(first)):
            body = client.get(body["next"]).json()
        assert len(body["results"]) == 40


def test_limit_and_offset_pages_are_unchanged(fleet):
    client = fleet.client("provider_admin")
    body = client.get("/api/v1/chips/?limit=10&offset=10").json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == Chip.objects.count() and len(body["results"]) == 10
    assert "offset=20" in body["next"] and "cursor" not in body["next"]


def test_bad_cursors_are_a_400_naming_cursor(fleet):
    client = fleet.client("provider_admin")
    first = client.get("/api/v1/ultraservers/?limit=1&cursor=").json()
    token = _cursor(first["next"])
    cases = {
        "/api/v1/ultraservers/?cursor=nonsense": "invalid_cursor",
        f"/api/v1/ultraservers/?cursor={token[:-2]}xx": "invalid_cursor",  # tampered
        f"/api/v1/ultraservers/?cursor={token}&ordering=-serial": "cursor_mismatch",
        f"/api/v1/chips/?cursor={token}": "cursor_mismatch",  # another list's
    }
    for url, code in cases.items():
        body = assert_error_body(client.get(url), 400)
        assert body["errors"][0]["field"] == "cursor" and body["errors"][0]["code"] == code, url
    both = assert_error_body(client.get(f"/api/v1/ultraservers/?cursor={token}&offset=3"), 400)
    assert {e["field"] for e in both["errors"]} == {"cursor", "offset"}
    # Only lists page: on a detail it is an unknown parameter, as before.
    server = fleet.servers["alpha"]
    detail = assert_error_body(client.get(f"/api/v1/ultraservers/{server.pk}/?cursor="), 400)
    assert detail["errors"][0]["code"] == "unknown_filter"


def test_cursor_pages_are_scoped_like_any_list(fleet):
    client = fleet.client("beta_admin")
    rows, _ = _walk(client, "/api/v1/ultraservers/", limit=1)
    assert [r["id"] for r in rows] == [fleet.servers["beta"].pk]


def test_the_schema_documents_cursor_pages(fleet):
    spec = openapi_schema()
    for path in ("/api/v1/ultraservers/", "/api/v1/chips/", "/api/v1/audit-events/"):
        params = {p["name"]: p for p in spec["paths"][path]["get"]["parameters"]}
        assert params["cursor"]["schema"] == {"type": "string"}
        assert {"limit", "offset"} <= set(params)
    page = spec["components"]["schemas"]["PaginatedUltraServerList"]
    assert page["required"] == ["results"] and "count" in page["properties"]
    client = fleet.client("provider_admin")
    _servers(fleet, 3)
    answer = client.get("/api/v1/ultraservers/?limit=2&cursor=")
    assert_conforms(answer)
    assert_conforms(client.get(answer.json()["next"]))
    assert_conforms(client.get("/api/v1/ultraservers/?limit=2"))
