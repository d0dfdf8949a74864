"""Object responses for automation, on every endpoint (``tenants.api.base``): ETag on detail,
create and update; If-None-Match → 304; If-Match → 412 when stale, checked again under the
write's row lock; Location on 201; ``?brief`` and ``?fields``."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import get_resolver
from rest_framework import serializers
from rest_framework.test import APIClient

from factory.inventory.models import PowerFeed, Rack
from tenants.api.base import AuditedModelViewSet, ObjectResponseMixin
from tenants.models import AuditEvent
from tenants.services import audit
from tests.factory.core.test_api_conventions import ENDPOINTS, WRITABLE, detail
from tests.support.api import assert_error_body
from tests.support.fleet import build_fleet

NAMES = list(ENDPOINTS)
PATCHABLE = [name for name in NAMES if ENDPOINTS[name].patch]


def _viewsets():
    seen = {}

    def walk(patterns):
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                walk(pattern.url_patterns)
            cls = getattr(getattr(pattern, "callback", None), "cls", None)
            if cls is not None:
                seen[cls.__name__] = cls

    walk(get_resolver().url_patterns)
    return seen


# --- ETag and If-None-Match --------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_detail_has_a_strong_etag_and_if_none_match_is_304(fleet, name):
    endpoint = ENDPOINTS[name]
    client = fleet.client("provider_admin")
    url = detail(endpoint, endpoint.own(fleet))
    first = client.get(url)
    etag = first["ETag"]
    assert first.status_code == 200 and etag.startswith('"') and not etag.startswith("W/")
    assert client.get(url)["ETag"] == etag  # unchanged: the same tag
    assert client.get(url + "?brief=true")["ETag"] == etag  # the object's, whatever the shape
    not_modified = client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified["ETag"] == etag
    assert client.get(url, HTTP_IF_NONE_MATCH=f'"other", W/{etag}').status_code == 304
    assert client.get(url, HTTP_IF_NONE_MATCH='"other"').status_code == 200


def test_etags_differ_between_objects_and_change_with_what_a_client_sees(fleet):
    client = fleet.client("provider_admin")
    a, b = fleet.racks["alpha"], fleet.racks["beta"]
    tag_a = client.get(f"/api/v1/racks/{a.pk}/")["ETag"]
    assert tag_a != client.get(f"/api/v1/racks/{b.pk}/")["ETag"]
    # The rack's row is untouched, but its power budget (from its feeds) is not.
    PowerFeed.objects.filter(rack=a).update(amperage=10)
    refreshed = client.get(f"/api/v1/racks/{a.pk}/", HTTP_IF_NONE_MATCH=tag_a)
    assert refreshed.status_code == 200 and refreshed["ETag"] != tag_a


# --- If-Match ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PATCHABLE)
def test_if_match_guards_updates(fleet, name):
    endpoint = ENDPOINTS[name]
    client = fleet.client("provider_admin")
    obj = endpoint.own(fleet)
    url = detail(endpoint, obj)
    etag = client.get(url)["ETag"]
    before = endpoint.model.objects.filter(pk=obj.pk).values().get()
    events = AuditEvent.objects.count()

    for stale in ("bogus", '"0000"', f"W/{etag}", etag.strip('"')):
        body = assert_error_body(client.patch(url, endpoint.patch, HTTP_IF_MATCH=stale), 412)
        assert body["code"] == "etag_mismatch"
        assert body["errors"][0]["field"] == "If-Match"
    assert endpoint.model.objects.filter(pk=obj.pk).values().get() == before
    assert AuditEvent.objects.count() == events

    shown = client.get(url).json()
    changed = client.patch(url, endpoint.patch, HTTP_IF_MATCH=f'"other", {etag}')
    assert changed.status_code == 200, changed.content
    new_etag = changed["ETag"]
    assert client.get(url)["ETag"] == new_etag  # the update's ETag is the one GET shows
    assert client.get(url).json() == changed.json()
    if changed.json() != shown:  # (a patch that changes nothing keeps the version)
        assert new_etag != etag
        assert_error_body(client.patch(url, endpoint.patch, HTTP_IF_MATCH=etag), 412)  # lost
    assert client.patch(url, endpoint.patch, HTTP_IF_MATCH="*").status_code == 200
    assert client.patch(url, endpoint.patch).status_code == 200  # no header: no precondition


@pytest.mark.parametrize("name", PATCHABLE)
def test_if_match_is_checked_under_the_writes_row_lock(fleet, name, monkeypatch):
    """Without the early check, the one made where save_object holds the lock still refuses."""
    endpoint = ENDPOINTS[name]
    client = fleet.client("provider_admin")
    obj = endpoint.own(fleet)
    url = detail(endpoint, obj)
    etag = client.get(url)["ETag"]
    monkeypatch.setattr(AuditedModelViewSet, "check_if_match", lambda self, instance, e: None)
    before = endpoint.model.objects.filter(pk=obj.pk).values().get()
    assert_error_body(client.patch(url, endpoint.patch, HTTP_IF_MATCH='"stale"'), 412)
    assert endpoint.model.objects.filter(pk=obj.pk).values().get() == before
    assert client.patch(url, endpoint.patch, HTTP_IF_MATCH=etag).status_code == 200


@pytest.mark.parametrize("name", WRITABLE)
def test_created_objects_have_location_and_etag_and_if_match_guards_delete(fleet, name):
    endpoint = ENDPOINTS[name]
    client = fleet.client("provider_admin")
    created = client.post(endpoint.url, endpoint.create(fleet))
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    assert created["Location"] == f"http://testserver{endpoint.url}{pk}/"
    shown = client.get(created["Location"])
    assert shown["ETag"] == created["ETag"] and shown.json() == created.json()

    assert_error_body(client.delete(created["Location"], HTTP_IF_MATCH='"stale"'), 412)
    assert endpoint.model.objects.filter(pk=pk).exists()
    assert client.delete(created["Location"], HTTP_IF_MATCH=created["ETag"]).status_code == 204
    assert not endpoint.model.objects.filter(pk=pk).exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_writers_with_the_same_etag_cannot_both_win(monkeypatch):
    """The first writer holds the rack's lock (slowed down while it does); the second passed
    the early check on the old version, waits for the lock, and is then refused."""
    fleet = build_fleet()
    rack = fleet.racks["alpha"]
    url = f"/api/v1/racks/{rack.pk}/"
    etag = fleet.client("provider_admin").get(url)["ETag"]
    clients = [fleet.client("provider_admin") for _ in range(2)]
    record, holding = audit.record, threading.Event()

    def slow_record(**kwargs):
        holding.set()
        time.sleep(0.5)
        return record(**kwargs)

    monkeypatch.setattr(audit, "record", slow_record)
    results = {}

    def writer(i: int, status: str) -> None:
        try:
            results[i] = clients[i].patch(url, {"status": status}, HTTP_IF_MATCH=etag)
        finally:
            connection.close()

    first = threading.Thread(target=writer, args=(0, "planned"))
    first.start()
    assert holding.wait(10)
    second = threading.Thread(target=writer, args=(1, "retired"))
    second.start()
    first.join()
    second.join()
    assert results[0].status_code == 200, results[0].content
    assert assert_error_body(results[1], 412)["errors"][0]["field"] == "If-Match"
    assert Rack.objects.get(pk=rack.pk).status == "planned"


# --- ?brief and ?fields ------------------------------------------------------------------------


def test_every_shaped_serializer_declares_its_brief_fields():
    missing = []
    for name, cls in _viewsets().items():
        if not issubclass(cls, ObjectResponseMixin):
            continue
        serializer_class = getattr(cls, "serializer_class", None)
        if not (
            isinstance(serializer_class, type)
            and issubclass(serializer_class, serializers.ModelSerializer)
        ):
            continue
        declared = getattr(serializer_class.Meta, "brief_fields", None)
        if not declared or not set(declared) <= set(serializer_class().fields):
            missing.append(name)
    assert missing == []


@pytest.mark.parametrize("name", NAMES)
def test_brief_lists_and_details_show_the_identifying_fields(fleet, name):
    endpoint = ENDPOINTS[name]
    client = fleet.client("provider_admin")
    obj = endpoint.own(fleet)
    full = client.get(detail(endpoint, obj)).json()
    brief = client.get(detail(endpoint, obj) + "?brief=true").json()
    assert {"id", "url", "display"} <= set(brief) and len(brief) <= 7
    assert brief["url"] == f"http://testserver{detail(endpoint, obj)}"
    assert brief["display"] == str(obj)
    assert {k: v for k, v in brief.items() if k not in ("url", "display")} == {
        k: full[k] for k in brief if k not in ("url", "display")
    }
    rows = client.get(endpoint.url + "?brief&limit=1000").json()["results"]
    assert rows and all(set(row) == set(brief) for row in rows)


def test_fields_choose_the_fields_and_an_unknown_one_is_a_400_naming_it(fleet):
    client = fleet.client("provider_admin")
    rack = fleet.racks["alpha"]
    rows = client.get("/api/v1/racks/?fields=name,id,url").json()["results"]
    assert rows and all(list(row) == ["id", "url", "name"] for row in rows)
    shown = client.get(f"/api/v1/racks/{rack.pk}/?fields=power_budget_kw,display").json()
    assert shown == {"display": rack.name, "power_budget_kw": shown["power_budget_kw"]}

    body = assert_error_body(client.get("/api/v1/racks/?fields=name,bogus"), 400)
    assert body["errors"][0]["field"] == "fields"
    assert body["errors"][0]["code"] == "unknown_field" and "'bogus'" in body["message"]
    assert_error_body(client.get(f"/api/v1/racks/{rack.pk}/?fields=,"), 400)
    assert_error_body(client.get("/api/v1/racks/?brief=maybe"), 400)
    both = assert_error_body(client.get("/api/v1/racks/?brief=true&fields=id"), 400)
    assert both["errors"][0]["field"] == "fields"
    assert set(client.get("/api/v1/racks/?brief=false").json()["results"][0]) > {"u_height"}


def test_a_brief_list_fetches_no_relation_it_does_not_show(fleet):
    client = fleet.client("provider_admin")
    feeds = PowerFeed._meta.db_table
    client.get("/api/v1/racks/")  # the token's first use is written down once
    with CaptureQueriesContext(connection) as full:
        client.get("/api/v1/racks/")
    with CaptureQueriesContext(connection) as brief:
        client.get("/api/v1/racks/?brief=true")
    assert any(feeds in q["sql"] for q in full.captured_queries)
    assert not any(feeds in q["sql"] for q in brief.captured_queries)
    assert len(brief) == len(full) - 1


def test_a_brief_workflow_list_counts_no_targets(fleet):
    client = fleet.client("provider_admin")
    workflow = ENDPOINTS["workflows"].own(fleet)
    targets = "provisioning_workflowtarget"
    client.get("/api/v1/workflows/")
    with CaptureQueriesContext(connection) as full:
        rows = client.get("/api/v1/workflows/").json()["results"]
    with CaptureQueriesContext(connection) as brief:
        brief_rows = client.get("/api/v1/workflows/?brief=true").json()["results"]
    assert any(targets in q["sql"] for q in full.captured_queries) and "target_count" in rows[0]
    assert not any(targets in q["sql"] for q in brief.captured_queries)
    assert {row["id"] for row in brief_rows} == {row["id"] for row in rows}
    counted = client.get("/api/v1/workflows/?fields=id,target_count").json()["results"]
    assert counted and all(set(row) == {"id", "target_count"} for row in counted)
    shown = client.get(f"/api/v1/workflows/{workflow.pk}/?brief=true")
    assert shown.status_code == 200 and shown["ETag"]


def test_writes_ignore_shaping_and_reads_of_other_shapes_are_untouched(fleet):
    client = fleet.client("provider_admin")
    rack = fleet.racks["alpha"]
    changed = client.patch(f"/api/v1/racks/{rack.pk}/?fields=id", {"status": "planned"})
    assert changed.status_code == 200 and "u_height" in changed.json()
    capacity = client.get(f"/api/v1/racks/{rack.pk}/capacity/?brief=true")
    assert capacity.status_code in (200, 400)  # an action: no shaping (filters may refuse it)


# --- the OpenAPI schema ------------------------------------------------------------------------


def test_schema_documents_brief_fields_and_conditional_headers(fleet):
    schema = APIClient().get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]

    def params(path, method):
        return {(p["name"], p["in"]) for p in paths[path][method].get("parameters", [])}

    assert {("brief", "query"), ("fields", "query")} <= params("/api/v1/racks/", "get")
    assert {("brief", "query"), ("If-None-Match", "header")} <= params("/api/v1/racks/{id}/", "get")
    assert ("If-Match", "header") in params("/api/v1/racks/{id}/", "patch")
    assert ("If-Match", "header") in params("/api/v1/racks/{id}/", "delete")
    assert "412" in paths["/api/v1/racks/{id}/"]["patch"]["responses"]
    assert "304" in paths["/api/v1/racks/{id}/"]["get"]["responses"]
    created = paths["/api/v1/racks/"]["post"]["responses"]["201"]["headers"]
    assert {"Location", "ETag"} <= set(created)
    assert ("Idempotency-Key", "header") in params("/api/v1/workflows/", "post")
