"""Platform promises: the OpenAPI schema, health and readiness, production settings, errors."""

import os
import socket
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings


def test_openapi_schema_generates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "spectacular",
            "--validate",
            "--fail-on-warn",
            "--file",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "factory.settings.test"},
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower(), result.stderr
    schema = out.read_text()
    for path in [
        "/api/v1/sites/",
        "/api/v1/racks/",
        "/api/v1/power-feeds/",
        "/api/v1/ultraservers/",
        "/api/v1/chips/",
        "/api/v1/catalog/chip-models/",
        "/api/v1/catalog/ultraserver-models/",
        "/api/v1/tenants/",
        "/api/v1/audit-events/",
        "/api/v1/capacity/sites/",
        "/api/v1/sites/{id}/capacity/",
        "/api/v1/racks/{id}/capacity/",
        "/api/v1/tokens/",
    ]:
        assert f"  {path}:" in schema, path
    assert "bearerAuth" in schema and "ErrorItem" in schema


def test_schema_and_docs_are_served(fleet):
    client = fleet.client("alpha_viewer")
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "cdn." not in html and "https://" not in html.split("<body")[0]  # assets served locally


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_database_and_redis_broker(client, settings):
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db
def test_readyz_is_503_naming_the_broker_when_it_is_down(client):
    with override_settings(CELERY_BROKER_URL=f"redis://127.0.0.1:{_closed_port()}/0"):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"] != "ok"


def test_request_id_is_echoed_or_made(client):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"
    made = client.get("/healthz", HTTP_X_REQUEST_ID="bad id with spaces")["X-Request-ID"]
    assert made != "bad id with spaces" and len(made) == 32


@pytest.mark.django_db
def test_unknown_api_path_is_json_404(client):
    response = client.get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_production_settings_pass_check_deploy():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "factory.settings.production",
        "SECRET_KEY": "k" * 20 + "Zq8#vT2!pL9@xR4$mN7^bW1&cY6*hJ3(" + "s" * 10,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/factory",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "ALLOWED_HOSTS": "factory.example.com",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_a_missing_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env.update(
        DJANGO_SETTINGS_MODULE="factory.settings.production",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/factory",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], capture_output=True, text=True, env=env
    )
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


@pytest.mark.django_db
def test_demo_fleet_loads_once_with_every_role():
    from factory.inventory.models import Chip, Site, UltraServer
    from tenants.choices import Role
    from tenants.models import Membership, Tenant

    out = StringIO()
    call_command("load_demo_fleet", stdout=out)
    assert "Demo fleet loaded" in out.getvalue()
    fra, iad = Site.objects.get(code="FRA1"), Site.objects.get(code="IAD1")
    assert (fra.country.code, iad.country.code) == ("DE", "US")
    assert fra.racks.count() == 4
    assert all(
        r.power_feeds.filter(path="A").exists() and r.power_feeds.filter(path="B").exists()
        for r in fra.racks.all()
    )
    assert set(
        UltraServer.objects.filter(rack__site=fra).values_list("model__slug", flat=True)
    ) == {"trn3-ultraserver"}
    assert set(
        UltraServer.objects.filter(rack__site=iad).values_list("model__slug", flat=True)
    ) == {"gb300-nvl72", "trn2-ultraserver"}
    assert Chip.objects.filter(ultraserver__rack__site=fra).count() == 4 * 144
    assert set(Membership.objects.values_list("role", flat=True)) == set(Role.values)
    assert Tenant.objects.get(slug="bsia").kind == "government"
    counts = (Site.objects.count(), UltraServer.objects.count(), Chip.objects.count())
    call_command("load_demo_fleet", stdout=StringIO())
    assert (Site.objects.count(), UltraServer.objects.count(), Chip.objects.count()) == counts


def test_out_of_range_values_are_400_not_500(fleet):
    client = fleet.client("provider_admin")
    # A valid ISO instant whose offset PostgreSQL cannot take (found by Schemathesis).
    response = client.get("/api/v1/audit-events/?since=1725-03-27T01:11:47%2B21:53")
    assert response.status_code == 200
    # Integers beyond bigint in a filter.
    huge = client.get("/api/v1/audit-events/?tenant_id=99999999999999999999999")
    assert huge.status_code in {200, 400}, huge.content
    # NUL bytes never reach the database.
    nul = client.get("/api/v1/ultraservers/?serial=%00x")
    assert nul.status_code == 400


def test_database_data_errors_become_400():
    from django.db import DataError

    from factory.core.errors import api_exception_handler

    response = api_exception_handler(DataError("time zone displacement out of range"), {})
    assert response.status_code == 400
    assert response.data["errors"][0]["code"] == "invalid_value"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_object_deleted_by_a_concurrent_request_is_404_not_500():
    """Found by Schemathesis: a PATCH whose object another request deletes between lookup and
    the locked re-read. Simulated by deleting the row from a second connection mid-request."""
    from django.db import connections

    from tenants.services import changes
    from tests.support.fleet import build_fleet, make_tenant

    fleet = build_fleet()
    doomed = make_tenant("doomed")
    real_save = changes.save_object

    def save_after_concurrent_delete(instance, ctx, **kwargs):
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("DELETE FROM tenants_tenant WHERE id = %s", [doomed.pk])
        finally:
            other.close()
        return real_save(instance, ctx, **kwargs)

    import tenants.api.base as base

    base.save_object = save_after_concurrent_delete
    try:
        response = fleet.client("provider_admin").patch(
            f"/api/v1/tenants/{doomed.pk}/", {"name": "Renamed"}
        )
    finally:
        base.save_object = real_save
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_conflict_names_protecting_objects_without_querying_them(fleet):
    """Found by Schemathesis: the protecting object was deferred and deleted concurrently, so
    its str() raised and the 409 became a 500."""
    from django.db.models import ProtectedError

    from factory.core.errors import api_exception_handler
    from factory.inventory.models import UltraServer

    server = fleet.servers["alpha"]
    deferred = UltraServer.objects.only("id").get(pk=server.pk)
    UltraServer.objects.filter(pk=server.pk).delete()  # gone, as if by another request
    response = api_exception_handler(ProtectedError("in use", {deferred}), {})
    assert response.status_code == 409
    assert response.data["errors"][0]["message"] == f"still in use by: UltraServer {server.pk}"
    # And through the API: deleting a tenant that still has sites is a 409 naming them.
    conflict = fleet.client("provider_admin").delete(f"/api/v1/tenants/{fleet.beta.pk}/")
    assert conflict.status_code == 409
    assert f"site {fleet.sites['beta'].pk}" in conflict.json()["errors"][0]["message"]


def test_root_leads_to_the_console_log_in(client):
    response = client.get("/", follow=True)
    assert response.redirect_chain[0] == ("/console/", 302)
    assert response.request["PATH_INFO"] == "/console/login/"
    assert response.status_code == 200


def test_api_root_lists_every_collection_endpoint(client):
    response = client.get("/api/v1/")
    assert response.status_code == 200
    body = response.json()
    endpoints = body["endpoints"]
    for name in ("sites", "racks", "ultraservers", "workflows", "sovereignty/rules", "tokens"):
        assert endpoints[name] == f"http://testserver/api/v1/{name}/"
    assert not [url for url in endpoints.values() if "{" in url or "(?P" in url]
    # every listed endpoint exists: anonymous callers get 401/405 from it, never 404
    for url in endpoints.values():
        assert client.get(url).status_code != 404, url
    assert body["schema"] == "http://testserver/api/schema/"


def test_favicon_is_an_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # ICO header
