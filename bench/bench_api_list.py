"""Listing 1,000 UltraServers through the API vs fetching the same rows raw.

The API request includes everything a customer's call pays: bearer-token lookup, role and tenant
scoping, filtering, pagination, DRF serialization and orjson rendering (in-process, no network).
Baseline: psycopg fetching the same columns with the same joins, and orjson dumping them.
Target: the API within 15× of the raw fetch (DRF serialization is the known cost).
"""

from __future__ import annotations

from bench.common import median_ms, timed, write_result

ROWS = 1000
TARGET_RATIO = 15.0


def run() -> dict:
    import orjson
    from django.db import connection
    from django.test import Client

    from factory.catalog.models import UltraServerModel
    from factory.inventory.models import UltraServer
    from tenants.choices import Role
    from tenants.services.tokens import issue_token
    from tests.support.fleet import CTX, make_person, make_rack, make_site, make_tenant

    tenant = make_tenant("bench")
    site = make_site(tenant, "BEN1", power_kw="100000", cooling_kw="100000")
    model = UltraServerModel.objects.get(slug="trn2-ultraserver")
    servers = []
    for r in range(ROWS // 2):
        rack = make_rack(site, f"BEN1-R{r:03d}", cooling="air", cooling_kw="100", amperage=200)
        for slot in range(2):
            servers.append(
                UltraServer(
                    serial=f"BEN-{r:03d}-{slot}",
                    model=model,
                    rack=rack,
                    position=1 + 20 * slot,
                    tenant=tenant,
                    lifecycle_state="in-service",
                    firmware_version="2026.09.1",
                )
            )
    UltraServer.objects.bulk_create(servers)  # chips are not part of this list
    viewer = make_person("bench-viewer", Role.TENANT_VIEWER, tenant)
    _, token = issue_token(viewer, CTX, name="bench")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    url = f"/api/v1/ultraservers/?limit={ROWS}"

    def api():
        response = client.get(url)
        assert response.status_code == 200
        assert len(orjson.loads(response.content)["results"]) == ROWS

    sql = """
        SELECT u.id, u.serial, u.model_id, m.name, m.chip_count, u.rack_id, r.name, r.site_id,
               u.position, u.tenant_id, u.lifecycle_state, u.firmware_version, u.runtime_version,
               u.in_maintenance, u.fault_reason, u.last_heartbeat_at, u.created_at, u.updated_at
        FROM inventory_ultraserver u
        JOIN catalog_ultraservermodel m ON m.id = u.model_id
        LEFT JOIN inventory_rack r ON r.id = u.rack_id
        LEFT JOIN inventory_site s ON s.id = r.site_id
        WHERE s.tenant_id = %s OR u.tenant_id = %s
        ORDER BY u.serial LIMIT %s"""

    def raw():
        with connection.cursor() as cursor:
            cursor.execute(sql, [tenant.pk, tenant.pk, ROWS])
            rows = cursor.fetchall()
        assert len(rows) == ROWS
        orjson.dumps(rows, default=str)

    api_ms = median_ms(timed(api, 15))
    raw_ms = median_ms(timed(raw, 15))
    return write_result(
        "api_list_ultraservers", api_ms, "ms per 1,000-row page", raw_ms, TARGET_RATIO, rows=ROWS
    )
