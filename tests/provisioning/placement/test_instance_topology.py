"""``instance-topology/``: per-tenant hashed network nodes, tenant isolation, filters, keyset
pages by ``MaxResults``/``NextToken``, bad input named, and a fixed number of queries.

The fabric, reservations and units are built with the ORM (their services are written
elsewhere); the servers under test are created in bulk, so their power is not checked."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import pytest
from django.core import signing
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from factory.catalog.models import UltraServerModel
from factory.inventory.models import NetworkNode, Rack, Site, UltraServer
from provisioning.placement.choices import MemberRole, ReservationState
from provisioning.placement.models import (
    CapacityReservation,
    ReservedServer,
    UnitMember,
    WorkloadUnit,
)
from provisioning.placement.topology import Filters
from tests.support.api import assert_error_body
from tests.support.schema import assert_conforms

pytestmark = pytest.mark.django_db

URL = "/api/v1/instance-topology/"
NODE_ID = re.compile(r"^nn-[0-9a-f]{17}$")
DOMAIN_ID = re.compile(r"^us-[0-9a-f]{17}$")


@dataclass
class Fabric:
    """Alpha's site: spine S1 over leaves L1 and L2, spine S2 over leaf L3; servers added
    round-robin under the leaves."""

    site: Site
    rack: Rack
    nodes: dict[str, NetworkNode]
    servers: list[UltraServer] = field(default_factory=list)

    def add(self, count: int, leaves=("L1", "L2", "L3"), prefix: str = "T") -> list[UltraServer]:
        model = UltraServerModel.objects.get(slug="trn3-ultraserver")
        start = len(self.servers)
        made = UltraServer.objects.bulk_create(
            UltraServer(
                serial=f"{self.site.code}-{prefix}{start + i:03d}",
                model=model,
                rack=self.rack,
                position=1 + (start + i) % 40,
                tenant=self.site.tenant,
                network_node=self.nodes[leaves[(start + i) % len(leaves)]],
            )
            for i in range(count)
        )
        self.servers += made
        return made


def build_fabric(site: Site, rack: Rack) -> Fabric:
    s1 = NetworkNode.objects.create(site=site, name=f"{site.code}-SPINE-1", layer=1)
    s2 = NetworkNode.objects.create(site=site, name=f"{site.code}-SPINE-2", layer=1)
    nodes = {
        "S1": s1,
        "S2": s2,
        "L1": NetworkNode.objects.create(site=site, name=f"{site.code}-LEAF-1", layer=2, parent=s1),
        "L2": NetworkNode.objects.create(site=site, name=f"{site.code}-LEAF-2", layer=2, parent=s1),
        "L3": NetworkNode.objects.create(site=site, name=f"{site.code}-LEAF-3", layer=2, parent=s2),
    }
    return Fabric(site, rack, nodes)


def reserve(tenant, site, servers, *, start=None, hours=4, state=ReservationState.ACTIVE):
    start = start or timezone.now() - dt.timedelta(hours=1)
    end = start + dt.timedelta(hours=hours)
    reservation = CapacityReservation.objects.create(
        tenant=tenant,
        site=site,
        model=servers[0].model,
        count=len(servers),
        starts_at=start,
        ends_at=end,
        state=state,
    )
    ReservedServer.objects.bulk_create(
        ReservedServer(reservation=reservation, ultraserver=s, starts_at=start, ends_at=end)
        for s in servers
    )
    return reservation


def make_unit(tenant, site, servers, name="rufus", reservation=None) -> WorkloadUnit:
    unit = WorkloadUnit.objects.create(
        tenant=tenant, site=site, name=name, size=len(servers), reservation=reservation
    )
    UnitMember.objects.bulk_create(
        UnitMember(
            unit=unit,
            ultraserver=s,
            role=MemberRole.LEADER if i == 0 else MemberRole.FOLLOWER,
        )
        for i, s in enumerate(servers)
    )
    return unit


def build_alpha_fabric(fleet) -> Fabric:
    """Alpha's fabric with its fleet server under L1 and six more servers."""
    fabric = build_fabric(fleet.sites["alpha"], fleet.racks["alpha"])
    first = fleet.servers["alpha"]
    first.network_node = fabric.nodes["L1"]
    first.save(update_fields=["network_node"])
    fabric.servers.append(first)
    fabric.add(6)
    return fabric


@pytest.fixture
def alpha_fabric(fleet) -> Fabric:
    return build_alpha_fabric(fleet)


def instances(client, **params) -> list[dict]:
    response = client.get(URL, params)
    assert response.status_code == 200, response.content
    return response.json()["Instances"]


def by_serial(entries: list[dict]) -> dict[str, dict]:
    return {e["ultraserver"]["serial"]: e for e in entries}


def walk(client, page_size: int, **params) -> list[dict]:
    """Every page of the list, following ``NextToken``; each page checked against the schema."""
    found: list[dict] = []
    token = None
    for _ in range(1000):
        query = {**params, "MaxResults": page_size}
        if token:
            query["NextToken"] = token
        response = client.get(URL, query)
        assert response.status_code == 200, response.content
        assert_conforms(response)
        body = response.json()
        assert len(body["Instances"]) <= page_size
        found += body["Instances"]
        token = body["NextToken"]
        if token is None:
            return found
    raise AssertionError("the walk did not end")


# --- paths and hashed ids -------------------------------------------------------------------


def test_paths_are_top_first_hashed_and_show_no_names(fleet, alpha_fabric):
    client = fleet.client("alpha_viewer")
    response = client.get(URL, {"MaxResults": 100})
    assert response.status_code == 200
    assert_conforms(response)
    text = response.content.decode()
    for node in alpha_fabric.nodes.values():
        assert node.name not in text
        assert f'"{node.pk}"' not in text
    seen = by_serial(response.json()["Instances"])
    assert set(seen) == {s.serial for s in alpha_fabric.servers}
    leaf_of = {s.serial: s.network_node_id for s in alpha_fabric.servers}
    for entry in seen.values():
        assert len(entry["network_nodes"]) == 2
        assert all(NODE_ID.match(n) for n in entry["network_nodes"])
        assert DOMAIN_ID.match(entry["ultraserver_domain"])
        assert entry["site"] == {"id": alpha_fabric.site.pk, "code": alpha_fabric.site.code}
        assert entry["zone"] == alpha_fabric.site.code
        assert entry["instance_type"] == "trn3-ultraserver"
        assert entry["capacity_block_id"] is None and entry["unit"] is None
    # Same switch, same id (within the tenant); different switch, different id.
    ids_by_leaf: dict[int, set[tuple[str, ...]]] = {}
    for serial, entry in seen.items():
        ids_by_leaf.setdefault(leaf_of[serial], set()).add(tuple(entry["network_nodes"]))
    assert all(len(paths) == 1 for paths in ids_by_leaf.values())
    l1, l2, l3 = (ids_by_leaf[alpha_fabric.nodes[n].pk].pop() for n in ("L1", "L2", "L3"))
    assert l1[0] == l2[0] != l3[0]  # S1 over L1 and L2, S2 over L3
    assert len({l1[1], l2[1], l3[1]}) == 3
    assert len({e["ultraserver_domain"] for e in seen.values()}) == len(seen)
    # A server outside the fabric has no nodes (EC2: empty).
    outside = alpha_fabric.servers[1]
    UltraServer.objects.filter(pk=outside.pk).update(network_node=None)
    entry = by_serial(instances(client, ultraserver=outside.serial))[outside.serial]
    assert entry["network_nodes"] == []


def test_node_ids_differ_between_tenants_for_the_same_switch(fleet, alpha_fabric):
    """Beta has a server allocated to it, out of any rack, under alpha's leaf L1: beta sees L1
    (and S1) under other ids than alpha does, and nothing of alpha's servers or site."""
    beta_server = UltraServer.objects.create(
        serial="BETA-LOOSE-1",
        model=alpha_fabric.servers[0].model,
        tenant=fleet.beta,
        network_node=alpha_fabric.nodes["L1"],
    )
    alpha_entry = by_serial(instances(fleet.client("alpha_viewer")))[fleet.servers["alpha"].serial]
    beta_seen = by_serial(instances(fleet.client("beta_viewer"), MaxResults=100))
    assert set(beta_seen) == {fleet.servers["beta"].serial, beta_server.serial}
    beta_entry = beta_seen[beta_server.serial]
    assert len(beta_entry["network_nodes"]) == 2
    assert not set(beta_entry["network_nodes"]) & set(alpha_entry["network_nodes"])
    assert beta_entry["site"] is None and beta_entry["zone"] is None  # not alpha's site
    # Equal within a tenant, whoever asks: alpha's admin and the provider see alpha's ids.
    admin_entry = by_serial(instances(fleet.client("alpha_admin")))[fleet.servers["alpha"].serial]
    provider = by_serial(instances(fleet.client("provider_admin"), MaxResults=100))
    assert admin_entry["network_nodes"] == alpha_entry["network_nodes"]
    assert provider[fleet.servers["alpha"].serial]["network_nodes"] == alpha_entry["network_nodes"]
    assert provider[beta_server.serial]["network_nodes"] == beta_entry["network_nodes"]
    assert set(provider) >= {s.serial for s in alpha_fabric.servers} | {beta_server.serial}


def test_ids_follow_the_secret(fleet, alpha_fabric, settings):
    client = fleet.client("alpha_viewer")
    serial = fleet.servers["alpha"].serial
    before = by_serial(instances(client))[serial]
    settings.TOPOLOGY_ID_SECRET = "another-secret-for-node-ids"
    after = by_serial(instances(client))[serial]
    assert after["network_nodes"] != before["network_nodes"]
    assert after["ultraserver_domain"] != before["ultraserver_domain"]
    assert all(NODE_ID.match(n) for n in after["network_nodes"])


# --- reservations, units and filters --------------------------------------------------------


def test_capacity_block_unit_and_their_filters(fleet, alpha_fabric):
    alpha, site = fleet.alpha, alpha_fabric.site
    servers = alpha_fabric.servers
    now_block = reserve(alpha, site, servers[:3])
    later = reserve(alpha, site, servers[3:5], start=timezone.now() + dt.timedelta(days=2))
    reserve(alpha, site, servers[5:6], state=ReservationState.CANCELLED)
    unit = make_unit(alpha, site, servers[:2], reservation=now_block)
    client = fleet.client("alpha_operator")
    seen = by_serial(instances(client, MaxResults=100))
    for s in servers[:3]:
        assert seen[s.serial]["capacity_block_id"] == f"cr-{now_block.pk}"
    for s in servers[3:]:
        assert seen[s.serial]["capacity_block_id"] is None  # later, cancelled, none
    assert seen[servers[0].serial]["unit"] == {
        "id": unit.pk,
        "name": "rufus",
        "role": "leader",
        "state": "active",
    }
    assert seen[servers[1].serial]["unit"]["role"] == "follower"
    assert seen[servers[2].serial]["unit"] is None

    assert set(by_serial(instances(client, unit=unit.pk))) == {s.serial for s in servers[:2]}
    held = {s.serial for s in servers[3:5]}
    assert set(by_serial(instances(client, reservation=f"cr-{later.pk}"))) == held
    assert set(by_serial(instances(client, reservation=str(later.pk)))) == held
    both = client.get(URL, {"ultraserver": [servers[0].serial, str(servers[4].pk)]})
    assert set(by_serial(both.json()["Instances"])) == {servers[0].serial, servers[4].serial}
    combined = instances(client, unit=unit.pk, reservation=f"cr-{later.pk}")
    assert combined == []  # filters are AND-ed


def test_other_tenants_servers_units_and_reservations_are_absent(fleet, alpha_fabric):
    alpha, site = fleet.alpha, alpha_fabric.site
    block = reserve(alpha, site, alpha_fabric.servers[:2])
    unit = make_unit(alpha, site, alpha_fabric.servers[:2])
    beta = fleet.client("beta_admin")
    seen = by_serial(instances(beta, MaxResults=100))
    assert set(seen) == {fleet.servers["beta"].serial}
    assert instances(beta, unit=unit.pk) == []
    assert instances(beta, reservation=f"cr-{block.pk}") == []
    assert instances(beta, ultraserver=[alpha_fabric.servers[0].serial]) == []
    assert instances(beta, ultraserver=[str(alpha_fabric.servers[0].pk)]) == []
    assert instances(beta, unit=10**12, reservation="cr-999999999") == []  # unknown: none too
    # Beta's own server, held by a reservation of alpha's (which beta cannot see): not shown.
    ReservedServer.objects.create(
        reservation=block,
        ultraserver=fleet.servers["beta"],
        starts_at=block.starts_at,
        ends_at=block.ends_at,
    )
    entry = by_serial(instances(beta))[fleet.servers["beta"].serial]
    assert entry["capacity_block_id"] is None
    assert instances(beta, reservation=str(block.pk)) == []


# --- pages ----------------------------------------------------------------------------------


def test_pagination_round_trip_over_every_server(fleet, alpha_fabric):
    alpha_fabric.add(16)  # 23 in all
    client = fleet.client("alpha_viewer")
    expected = sorted(s.pk for s in alpha_fabric.servers)
    for size in (1, 5, 23, 100):
        found = walk(client, size)
        ids = [e["ultraserver"]["id"] for e in found]
        assert ids == expected, size  # each once, by id
    default = client.get(URL).json()
    assert len(default["Instances"]) == 20 and default["NextToken"]
    # A filtered walk keeps its filter on every page.
    unit = make_unit(fleet.alpha, alpha_fabric.site, alpha_fabric.servers[::2], name="evens")
    found = walk(client, 3, unit=unit.pk)
    assert [e["ultraserver"]["id"] for e in found] == sorted(
        s.pk for s in alpha_fabric.servers[::2]
    )


def test_rows_added_between_pages_are_neither_skipped_nor_repeated(fleet, alpha_fabric):
    client = fleet.client("alpha_viewer")
    first = client.get(URL, {"MaxResults": 4}).json()
    added = alpha_fabric.add(3, prefix="N")
    rest = walk_from(client, first["NextToken"], 4)
    ids = [e["ultraserver"]["id"] for e in first["Instances"] + rest]
    assert ids == sorted(s.pk for s in alpha_fabric.servers)
    assert {s.pk for s in added} <= set(ids)


def walk_from(client, token: str, size: int) -> list[dict]:
    found: list[dict] = []
    while token:
        body = client.get(URL, {"MaxResults": size, "NextToken": token}).json()
        found += body["Instances"]
        token = body["NextToken"]
    return found


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field", "code"),
    [
        ({"MaxResults": "0"}, "MaxResults", "out_of_range"),
        ({"MaxResults": "101"}, "MaxResults", "out_of_range"),
        ({"MaxResults": "-3"}, "MaxResults", "out_of_range"),
        ({"MaxResults": "ten"}, "MaxResults", "invalid"),
        ({"MaxResults": "--5"}, "MaxResults", "invalid"),
        ({"MaxResults": "9" * 80}, "MaxResults", "max_length"),
        ({"unit": "rufus"}, "unit", "invalid"),
        ({"unit": "0"}, "unit", "out_of_range"),
        ({"unit": str(2**63)}, "unit", "out_of_range"),
        ({"reservation": "block-7"}, "reservation", "invalid"),
        ({"reservation": "cr-"}, "reservation", "invalid"),
        ({"reservation": f"cr-{2**63}"}, "reservation", "invalid"),
        ({"ultraserver": ""}, "ultraserver", "blank"),
        ({"ultraserver": "x" * 65}, "ultraserver", "max_length"),
        ({"ultraserver": "A\x00B"}, "ultraserver", "invalid"),
        ({"ultraserver": [f"S{i}" for i in range(101)]}, "ultraserver", "too_many"),
        ({"NextToken": "not-a-token"}, "NextToken", "invalid_token"),
        ({"InstanceIds": "1"}, "InstanceIds", "unknown_filter"),
        ({"limit": "5"}, "limit", "unknown_filter"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(fleet, params, field, code):
    response = fleet.client("alpha_viewer").get(URL, params)
    body = assert_error_body(response, 400)
    assert [(e["field"], e["code"]) for e in body["errors"]] == [(field, code)]


def test_a_tampered_or_foreign_next_token_is_a_400(fleet, alpha_fabric):
    client = fleet.client("alpha_viewer")
    token = client.get(URL, {"MaxResults": 2}).json()["NextToken"]
    assert token
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    body = assert_error_body(client.get(URL, {"NextToken": tampered}), 400)
    assert body["errors"][0]["field"] == "NextToken"
    forged = signing.Signer(salt="elsewhere").sign_object({"a": 1, "q": Filters().key()})
    assert_error_body(client.get(URL, {"NextToken": forged}), 400)
    # A token of the unfiltered walk, replayed with a filter.
    body = assert_error_body(client.get(URL, {"NextToken": token, "unit": "5"}), 400)
    assert body["errors"][0] == {
        "field": "NextToken",
        "code": "next_token_mismatch",
        "message": body["errors"][0]["message"],
    }
    # A cursor of another list is no NextToken.
    cursor = client.get("/api/v1/ultraservers/", {"cursor": "", "limit": 1}).json()["next"]
    other = cursor.split("cursor=")[1]
    assert_error_body(client.get(URL, {"NextToken": other}), 400)


def test_anonymous_is_a_401(client):
    assert_error_body(client.get(URL), 401)


# --- queries --------------------------------------------------------------------------------


def _queries(client, url: str, params: dict) -> tuple[int, object]:
    client.get(url, params)  # warm: the token's first use, caches
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params)
    assert response.status_code == 200, response.content
    return len(captured.captured_queries), response


def test_query_count_is_fixed_however_many_servers(fleet, alpha_fabric):
    """5 servers or 50, held, in units: the same number of queries for a page and an export."""
    alpha, site = fleet.alpha, alpha_fabric.site
    client = fleet.client("alpha_viewer")
    urls = [
        (URL, {"MaxResults": 100}),
        ("/api/v1/instance-topology/export/json/", {"site": site.code}),
        ("/api/v1/instance-topology/export/slurm-tree/", {"site": site.code}),
    ]
    first = alpha_fabric.servers[:5]
    UltraServer.objects.filter(pk__in=[s.pk for s in alpha_fabric.servers[5:]]).delete()
    alpha_fabric.servers = list(first)
    reserve(alpha, site, first[:2])
    make_unit(alpha, site, first[:2])
    small = [_queries(client, url, params) for url, params in urls]
    assert len(small[0][1].json()["Instances"]) == 5

    more = alpha_fabric.add(45, prefix="Q")
    reserve(alpha, site, more[:20])
    make_unit(alpha, site, more[:8], name="big")
    large = [_queries(client, url, params) for url, params in urls]
    assert len(large[0][1].json()["Instances"]) == 50
    assert [n for n, _ in large] == [n for n, _ in small]
