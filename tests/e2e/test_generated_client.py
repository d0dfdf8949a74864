"""A Python client generated from the served schema by openapi-python-client (offline, no
warnings allowed) works against a real gunicorn: typed answers, typed enums, typed errors."""

import datetime as dt
import importlib
import json
import subprocess
import sys
import urllib.request

import orjson
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from factory import wire
from factory.agents import services as agents
from factory.inventory.demo import load_demo_fleet
from factory.inventory.models import Site, UltraServer
from tenants.access import SYSTEM
from tenants.services.changes import ChangeContext
from tenants.services.tokens import issue_token
from tests.support.api import gateway
from tests.support.processes import BIN, app_env, gunicorn
from tests.support.telemetry import server_report

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
PACKAGE = "factory_api_client"
CTX = ChangeContext(SYSTEM)


@pytest.fixture
def gunicorn_url(transactional_db, tmp_path):
    env = app_env(settings.REDIS_URL)
    with gunicorn(env, tmp_path / "gunicorn.log") as url:
        yield url


@pytest.fixture
def api(gunicorn_url, tmp_path):
    """The generated package, imported from a temporary directory."""
    schema = tmp_path / "schema.json"
    with urllib.request.urlopen(f"{gunicorn_url}/api/schema/?format=json", timeout=30) as r:
        schema.write_bytes(r.read())
    config = tmp_path / "config.json"
    # Evidence packs are zip archives and the Slurm exports YAML: the generator's documented
    # override reads both as files (it has no YAML reader).
    config.write_text(
        json.dumps(
            {
                "package_name_override": PACKAGE,
                "post_hooks": [],
                "content_type_overrides": {
                    "application/zip": "application/octet-stream",
                    "application/yaml": "application/octet-stream",
                },
            }
        )
    )
    result = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(schema),
            "--config",
            str(config),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / PACKAGE),
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def send_telemetry(url: str, site: Site, server: UltraServer) -> None:
    """Two samples from the site's agent, chip 5 reporting Warning (degraded)."""
    _, clear = agents.issue_agent(site, "client-test-agent", CTX)
    health = [int(wire.HealthCode.OK)] * server.model.chip_count
    health[5] = int(wire.HealthCode.DEGRADED)
    now = dt.datetime.now(dt.UTC)
    reports = [
        server_report(server.serial, i + 1, now - dt.timedelta(seconds=20 - 10 * i), health=health)
        for i in range(2)
    ]
    request = urllib.request.Request(
        f"{url}{gateway(wire.TELEMETRY_PATH)}",
        data=orjson.dumps({"reports": reports}),
        headers={"Authorization": wire.authorization(clear), "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200


def test_a_generated_client_reads_writes_and_gets_typed_errors(api, gunicorn_url):
    load_demo_fleet()
    admin = get_user_model().objects.get(username="admin")
    _, token = issue_token(admin, CTX, name="generated-client")
    fra1 = Site.objects.get(code="FRA1")
    server = UltraServer.objects.filter(rack__site=fra1).select_related("model").first()
    send_telemetry(gunicorn_url, fra1, server)

    from factory_api_client import AuthenticatedClient, models
    from factory_api_client.api.racks import racks_create, racks_destroy, racks_retrieve
    from factory_api_client.api.sites import sites_list
    from factory_api_client.api.ultraservers import (
        ultraservers_chip_health_retrieve,
        ultraservers_retrieve,
        ultraservers_telemetry_retrieve,
    )
    from factory_api_client.api.ultraservers.ultraservers_telemetry_retrieve import (
        UltraserversTelemetryRetrieveResolution as Resolution,
    )

    client = AuthenticatedClient(
        base_url=gunicorn_url, token=token, raise_on_unexpected_status=True, timeout=30
    )
    with client:
        sites = sites_list.sync(client=client)
        assert isinstance(sites, models.PaginatedSiteList)
        assert {s.code for s in sites.results} >= {"FRA1", "IAD1"}

        got = ultraservers_retrieve.sync(id=server.pk, client=client)
        assert isinstance(got, models.UltraServer) and got.serial == server.serial
        assert isinstance(got.lifecycle_state, models.LifecycleStateEnum)

        health = ultraservers_chip_health_retrieve.sync(id=server.pk, client=client)
        assert isinstance(health, models.ChipHealth)
        assert len(health.chips) == server.model.chip_count
        assert isinstance(health.ts, dt.datetime)
        chip = health.chips[5]
        assert chip.health in set(models.ChipHealthEnum)  # the inventory's, as /chips/ says
        assert chip.reported_health == models.ChipHealthEnum.DEGRADED
        assert health.chips[0].reported_health == models.ChipHealthEnum.OK
        assert isinstance(health.chips[0].power_w, float)

        series = ultraservers_telemetry_retrieve.sync(
            id=server.pk, client=client, resolution=Resolution("raw"), limit=1
        )
        assert isinstance(series, models.TelemetrySeries)
        assert series.truncated is True and isinstance(series.next_start, dt.datetime)
        assert series.points[0].chips.health[5] == models.ChipHealthEnum.DEGRADED
        rest = ultraservers_telemetry_retrieve.sync(
            id=server.pk, client=client, resolution=Resolution("raw"), start=series.next_start
        )
        assert rest.truncated is False and rest.next_start is None and len(rest.points) == 1

        rack = racks_create.sync(
            client=client,
            body=models.RackRequest(
                name="FRA1-R99",
                site=fra1.pk,
                cooling_type=models.CoolingEnum.LIQUID,
                cooling_capacity_kw=200.0,
            ),
        )
        assert isinstance(rack, models.Rack) and rack.site_code == "FRA1"
        assert racks_destroy.sync_detailed(id=rack.id, client=client).status_code == 204

        gone = racks_retrieve.sync(id=rack.id, client=client)
        assert isinstance(gone, models.Error) and gone.status == 404
        refused = racks_create.sync(
            client=client,
            body=models.RackRequest(
                name="FRA1-R98",
                site=999_999,
                cooling_type=models.CoolingEnum.LIQUID,
                cooling_capacity_kw=200.0,
            ),
        )
        assert isinstance(refused, models.Error) and refused.status == 400
        assert [e.field for e in refused.errors] == ["site"]
