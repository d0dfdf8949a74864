"""The scheduler exports: Slurm ``topology.yaml`` (tree and block plugins, checked against the
keys topology.yaml(5) documents), Kubernetes node labels and JSON, per site or reservation;
and the pure core that shapes them (no database)."""

from __future__ import annotations

import re
import zlib

import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from factory.inventory.models import UltraServer
from provisioning.placement import exports
from provisioning.placement.exports import ServerTopology
from tests.provisioning.placement.test_instance_topology import (
    NODE_ID,
    Fabric,
    build_alpha_fabric,
    make_unit,
    reserve,
)
from tests.support.api import assert_error_body
from tests.support.purity import imported_modules
from tests.support.schema import assert_conforms, openapi_schema

EXPORT = "/api/v1/instance-topology/export/{}/"
SECRET = b"test-secret"
#: topology.yaml(5): a topology's attributes; a tree's switch's; a block topology's; a block's.
TOPOLOGY_KEYS = {"topology", "cluster_default", "tree", "block", "flat"}
SWITCH_KEYS = {"switch", "children", "nodes"}
BLOCK_TOPOLOGY_KEYS = {"block_sizes", "blocks"}
BLOCK_KEYS = {"block", "nodes"}
K8S_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _names(hostlist: str | None) -> list[str]:
    return hostlist.split(",") if hostlist else []


def server(serial: str, path: tuple[str, ...], site: str = "FRA1") -> ServerTopology:
    pk = zlib.crc32(serial.encode())
    return ServerTopology(
        id=pk,
        serial=serial,
        instance_type="trn3-ultraserver",
        site_id=1,
        site_code=site,
        network_nodes=path,
        ultraserver_domain=exports.domain_id(SECRET, 1, pk),
    )


# --- the pure core ---------------------------------------------------------------------------


def test_the_core_imports_no_django():
    forbidden = {"django", "rest_framework", "psycopg", "celery", "redis"}
    imported = imported_modules("provisioning/placement/exports.py")
    assert not {name.split(".")[0] for name in imported} & forbidden


def test_hashed_ids_are_keyed_per_tenant_and_reveal_nothing():
    a1, a2 = exports.node_id(SECRET, 1, 7), exports.node_id(SECRET, 1, 7)
    assert a1 == a2 and NODE_ID.match(a1)
    assert exports.node_id(SECRET, 2, 7) != a1  # another tenant
    assert exports.node_id(b"other", 1, 7) != a1  # another key
    assert exports.node_id(SECRET, 1, 8) != a1
    assert exports.domain_id(SECRET, 1, 7) != a1.replace("nn-", "us-")  # another kind
    ids = {exports.node_id(SECRET, 1, pk) for pk in range(2000)}
    assert len(ids) == 2000  # no collision over a large fabric


def test_node_path_walks_up_and_survives_a_loop():
    parents = {3: 2, 2: 1, 1: None, 9: 8, 8: 9}
    assert exports.node_path(3, parents) == (1, 2, 3)
    assert exports.node_path(None, parents) == ()
    assert exports.node_path(9, parents) == (8, 9)  # stops where it would repeat
    assert exports.node_path(5, {}) == (5,)


def test_reservation_ids():
    assert exports.parse_reservation_id("cr-12") == 12
    assert exports.parse_reservation_id("12") == 12
    for bad in ("cr-", "cr-0", "0", "cr-1x", "-1", "cr--1", "١٢", str(2**63)):
        assert exports.parse_reservation_id(bad) is None, bad


def test_block_sizes_start_at_the_smallest_block_and_double():
    assert exports.block_sizes([]) == []
    assert exports.block_sizes([4]) == [4]
    assert exports.block_sizes([4, 4, 4, 4]) == [4, 8, 16]
    assert exports.block_sizes([5, 3, 4]) == [3, 6]


def test_slurm_tree_adds_a_core_over_several_spines_and_lists_each_server_once():
    servers = [
        server("a1", ("s1", "l1")),
        server("a2", ("s1", "l1")),
        server("b1", ("s1", "l2")),
        server("c1", ("s2", "l3")),
        server("d1", ("s2",)),  # straight under a spine
        server("x1", ()),
    ]
    text = exports.slurm_yaml(exports.slurm_tree(servers, "fra1-tree"), servers)
    assert "# Outside the EFA fabric, not listed: x1" in text
    (topology,) = yaml.safe_load(text)
    assert list(topology) == ["topology", "cluster_default", "tree"]  # topology first
    switches = {s["switch"]: s for s in topology["tree"]["switches"]}
    assert switches["core"] == {"switch": "core", "children": "s1,s2"}
    assert switches["s1"] == {"switch": "s1", "children": "l1,l2"}
    assert switches["s2"] == {"switch": "s2", "children": "l3", "nodes": "d1"}
    assert switches["l1"]["nodes"] == "a1,a2"
    nodes = [n for s in switches.values() for n in _names(s.get("nodes"))]
    assert sorted(nodes) == ["a1", "a2", "b1", "c1", "d1"]
    one_spine = exports.slurm_tree(servers[:3], "t")
    assert "core" not in {s["switch"] for s in one_spine[0]["tree"]["switches"]}


def test_slurm_block_keeps_blocks_under_one_switch_adjacent():
    servers = [
        server("c1", ("s2", "l3")),
        server("a1", ("s1", "l1")),
        server("b1", ("s1", "l2")),
        server("a2", ("s1", "l1")),
    ]
    (topology,) = yaml.safe_load(exports.slurm_yaml(exports.slurm_block(servers, "b"), servers))
    blocks = topology["block"]["blocks"]
    assert [b["block"] for b in blocks] == ["l1", "l2", "l3"]
    assert [b["nodes"] for b in blocks] == ["a1,a2", "b1", "c1"]
    assert topology["block"]["block_sizes"] == [1, 2]


def test_k8s_labels_follow_eks_names():
    labels = exports.k8s_labels(server("a1", ("s1", "l1")))
    assert labels == {
        "topology.k8s.aws/network-node-layer-1": "s1",
        "topology.k8s.aws/network-node-layer-2": "l1",
        "topology.k8s.aws/ultraserver-id": labels["topology.k8s.aws/ultraserver-id"],
        "topology.kubernetes.io/zone": "FRA1",
    }
    odd_zone = exports.k8s_labels(server("a1", (), site="FRA1-"))
    assert "topology.kubernetes.io/zone" not in odd_zone  # not a valid label value


def test_yaml_quotes_what_would_not_parse_as_a_name():
    servers = [server("yes", ("s1",)), server("#1: odd", ("s1",)), server("007", ("s1",))]
    (topology,) = yaml.safe_load(exports.slurm_yaml(exports.slurm_tree(servers, "t"), servers))
    assert topology["tree"]["switches"][0]["nodes"] == "#1: odd,007,yes"


# --- the API ---------------------------------------------------------------------------------


@pytest.fixture
def alpha_fabric(fleet) -> Fabric:
    return build_alpha_fabric(fleet)


def assert_yaml_conforms(response) -> None:
    """The YAML answer, parsed, is what the published schema says ``application/yaml`` is."""
    operation = openapi_schema()["paths"][response.wsgi_request.path]["get"]
    schema = operation["responses"]["200"]["content"]["application/yaml"]["schema"]
    errors = list(OAS30Validator(schema).iter_errors(yaml.safe_load(response.content)))
    assert not errors, [e.message for e in errors[:5]]


def every_serial(fabric) -> list[str]:
    return sorted(s.serial for s in fabric.servers)


@pytest.mark.django_db
def test_slurm_tree_export_of_a_site(fleet, alpha_fabric):
    client = fleet.client("alpha_viewer")
    response = client.get(EXPORT.format("slurm-tree"), {"site": alpha_fabric.site.code})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/yaml")
    assert_yaml_conforms(response)
    text = response.content.decode()
    for node in alpha_fabric.nodes.values():
        assert node.name not in text
    topologies = yaml.safe_load(text)
    assert isinstance(topologies, list) and len(topologies) == 1
    topology = topologies[0]
    assert next(iter(topology)) == "topology" and set(topology) <= TOPOLOGY_KEYS
    assert topology["topology"] == "alp1-tree" and topology["cluster_default"] is True
    switches = topology["tree"]["switches"]
    names = [s["switch"] for s in switches]
    assert len(names) == len(set(names))
    assert all(set(s) <= SWITCH_KEYS and "switch" in s for s in switches)
    assert all(len(n) <= 64 for n in names)
    assert names[0] == "core" and all(NODE_ID.match(n) for n in names[1:])
    assert len(names) == 1 + 5  # two spines, three leaves
    known = set(names)
    for s in switches:
        assert set(_names(s.get("children"))) <= known
        assert s.get("children") or s.get("nodes")
    nodes = [n for s in switches for n in _names(s.get("nodes"))]
    assert sorted(nodes) == every_serial(alpha_fabric)  # every server once
    # The ids are the ones instance-topology/ shows.
    listed = client.get("/api/v1/instance-topology/", {"MaxResults": 100}).json()["Instances"]
    assert {n for e in listed for n in e["network_nodes"]} == known - {"core"}


@pytest.mark.django_db
def test_slurm_block_export_of_a_site(fleet, alpha_fabric):
    alpha_fabric.add(5)  # 12 servers, four under each leaf
    response = fleet.client("alpha_admin").get(
        EXPORT.format("slurm-block"), {"site": str(alpha_fabric.site.pk)}
    )
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/yaml")
    assert_yaml_conforms(response)
    (topology,) = yaml.safe_load(response.content)
    assert list(topology) == ["topology", "cluster_default", "block"]
    block = topology["block"]
    assert set(block) == BLOCK_TOPOLOGY_KEYS
    assert all(set(b) == BLOCK_KEYS for b in block["blocks"])
    assert len(block["blocks"]) == 3 and all(NODE_ID.match(b["block"]) for b in block["blocks"])
    members = [_names(b["nodes"]) for b in block["blocks"]]
    assert sorted(n for m in members for n in m) == every_serial(alpha_fabric)
    assert sorted(len(m) for m in members) == [4, 4, 4]
    # The smallest block, then its powers of two that three blocks can make up.
    assert block["block_sizes"] == [4, 8]
    # One block per lowest node: the servers of a block share their leaf.
    leaf = {s.serial: s.network_node_id for s in UltraServer.objects.all()}
    assert all(len({leaf[n] for n in m}) == 1 for m in members)


@pytest.mark.django_db
def test_k8s_and_json_exports(fleet, alpha_fabric):
    outside = alpha_fabric.servers[-1]
    UltraServer.objects.filter(pk=outside.pk).update(network_node=None)
    client = fleet.client("alpha_operator")
    response = client.get(EXPORT.format("k8s"), {"site": alpha_fabric.site.code})
    assert response.status_code == 200, response.content
    assert_conforms(response)
    body = response.json()
    assert body["scope"] == {"site": alpha_fabric.site.code}
    nodes = {n["name"]: n["labels"] for n in body["nodes"]}
    assert sorted(nodes) == every_serial(alpha_fabric)
    assert len(body["nodes"]) == len(nodes)
    for name, labels in nodes.items():
        assert all(K8S_VALUE.match(v) and len(v) <= 63 for v in labels.values())
        assert labels["topology.k8s.aws/ultraserver-id"].startswith("us-")
        assert labels["topology.kubernetes.io/zone"] == alpha_fabric.site.code
        layers = {k for k in labels if k.startswith("topology.k8s.aws/network-node-layer-")}
        assert len(layers) == (0 if name == outside.serial else 2)

    response = client.get(EXPORT.format("json"), {"site": alpha_fabric.site.code})
    assert response.status_code == 200
    assert_conforms(response)
    body = response.json()
    serials = [e["ultraserver"]["serial"] for e in body["Instances"]]
    assert sorted(serials) == every_serial(alpha_fabric)
    switches = {s["id"]: s for s in body["NetworkNodes"]}
    assert len(switches) == 5
    under = [u for s in switches.values() for u in s["ultraservers"]]
    assert sorted(under) == sorted(set(serials) - {outside.serial})
    # The Slurm exports leave the server outside the fabric out, and say so.
    text = client.get(EXPORT.format("slurm-tree"), {"site": alpha_fabric.site.code}).content
    assert f"not listed: {outside.serial}" in text.decode()


@pytest.mark.django_db
def test_exports_of_a_reservation_cover_its_servers_only(fleet, alpha_fabric):
    held = alpha_fabric.servers[2:5]
    block = reserve(fleet.alpha, alpha_fabric.site, held)
    make_unit(fleet.alpha, alpha_fabric.site, held[:2], reservation=block)
    client = fleet.client("alpha_viewer")
    for kind in ("slurm-tree", "slurm-block"):
        response = client.get(EXPORT.format(kind), {"reservation": f"cr-{block.pk}"})
        assert response.status_code == 200, response.content
        (topology,) = yaml.safe_load(response.content)
        assert topology["topology"] == f"cr-{block.pk}-{kind.removeprefix('slurm-')}"
        groups = topology.get("tree", {}).get("switches") or topology["block"]["blocks"]
        nodes = sorted(n for g in groups for n in _names(g.get("nodes")))
        assert nodes == sorted(s.serial for s in held)
    body = client.get(EXPORT.format("json"), {"reservation": str(block.pk)}).json()
    assert body["scope"] == {"reservation": f"cr-{block.pk}"}
    assert {e["capacity_block_id"] for e in body["Instances"]} == {f"cr-{block.pk}"}
    assert sum(1 for e in body["Instances"] if e["unit"]) == 2


@pytest.mark.django_db
def test_another_tenants_site_or_reservation_is_a_404(fleet, alpha_fabric):
    block = reserve(fleet.alpha, alpha_fabric.site, alpha_fabric.servers[:2])
    beta = fleet.client("beta_viewer")
    for kind in ("slurm-tree", "slurm-block", "k8s", "json"):
        url = EXPORT.format(kind)
        body = assert_error_body(beta.get(url, {"site": alpha_fabric.site.code}), 404)
        assert body["errors"][0]["field"] == "site"
        body = assert_error_body(beta.get(url, {"site": str(alpha_fabric.site.pk)}), 404)
        assert body["errors"][0]["field"] == "site"
        body = assert_error_body(beta.get(url, {"reservation": f"cr-{block.pk}"}), 404)
        assert body["errors"][0]["field"] == "reservation"
        assert_error_body(beta.get(url, {"site": "NOPE1"}), 404)
    # Beta's own site exports only beta's server, hashed for beta.
    (topology,) = yaml.safe_load(
        beta.get(EXPORT.format("slurm-tree"), {"site": fleet.sites["beta"].code}).content
    )
    assert topology["tree"]["switches"] == []  # beta's server hangs under no switch
    provider = fleet.client("provider_admin")
    response = provider.get(EXPORT.format("json"), {"reservation": f"cr-{block.pk}"})
    assert response.status_code == 200 and len(response.json()["Instances"]) == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "fields", "code"),
    [
        ({}, ["site", "reservation"], "required"),
        ({"site": "ALP1", "reservation": "cr-1"}, ["site", "reservation"], "ambiguous"),
        ({"reservation": "block"}, ["reservation"], "invalid"),
        ({"site": ""}, ["site"], "blank"),
        ({"site": "S" * 65}, ["site"], "max_length"),
        ({"site": "A\x00"}, ["site"], "invalid"),
        ({"site": "ALP1", "plugin": "tree"}, ["plugin"], "unknown_filter"),
    ],
)
def test_bad_export_input_is_a_400_naming_the_parameter(fleet, params, fields, code):
    for kind in ("slurm-tree", "k8s"):
        # Asked for YAML or anything: errors are the one JSON body.
        response = fleet.client("alpha_viewer").get(
            EXPORT.format(kind), params, HTTP_ACCEPT="application/yaml"
        )
        body = assert_error_body(response, 400)
        assert response["Content-Type"].startswith("application/json")
        assert [e["field"] for e in body["errors"]] == fields
        assert {e["code"] for e in body["errors"]} == {code}


NASTY = ["", " ", "0", "-1", "1e3", "9" * 30, "cr-0", "null", "true", "\u00e9\u6f22", "%00", "a,b"]


@pytest.mark.django_db
def test_nonsense_is_a_4xx_never_a_500(fleet, alpha_fabric):
    """What a fuzzer sends, on every parameter of every endpoint: an answer, or a 4xx in the
    one error shape."""
    client = fleet.client("alpha_operator")
    endpoints = {
        "/api/v1/instance-topology/": ["ultraserver", "unit", "reservation", "MaxResults"],
        **{EXPORT.format(k): ["site", "reservation"] for k in ("slurm-tree", "slurm-block")},
        **{EXPORT.format(k): ["site", "reservation"] for k in ("k8s", "json")},
    }
    for url, names in endpoints.items():
        for name in [*names, "NextToken", "other"]:
            for value in NASTY:
                response = client.get(url, {name: value})
                assert response.status_code < 500, (url, name, value)
                if response.status_code >= 400:
                    assert_error_body(response, response.status_code)
        assert client.head(url, {names[0]: alpha_fabric.site.code}).status_code < 500
