"""What tenants and their schedulers see of the EFA fabric: per-tenant hashed ids, the
``instance-topology/`` entry of a server, and the exports for schedulers (Slurm
``topology.yaml`` for the tree and block plugins, Kubernetes node labels, JSON). Pure core: no
Django; ``provisioning.placement.topology`` reads the database and hands rows in here.

Ids are ``nn-`` (a network node) or ``us-`` (an UltraServer domain) and 17 hex digits of
HMAC-SHA256 keyed with a server-side secret over (kind, tenant id, primary key): the same switch
has the same id for every server of one tenant, another id for another tenant, and an id says
nothing of the switch's name, of the number of switches, or of other tenants (without the key
they cannot be inverted or enumerated). The exports list only the switches on the paths of the
servers they describe, so they reveal no part of the fabric the caller has no server under.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

NODE_PREFIX = "nn-"
DOMAIN_PREFIX = "us-"
RESERVATION_PREFIX = "cr-"
HASH_HEX_DIGITS = 17  # as long as an EC2 id's hex part: 68 bits, no collision in practice
K8S_LAYER_LABEL = "topology.k8s.aws/network-node-layer-{}"
K8S_ULTRASERVER_LABEL = "topology.k8s.aws/ultraserver-id"
K8S_ZONE_LABEL = "topology.kubernetes.io/zone"
#: The root a Slurm tree gets when the servers sit under several top-layer switches: they are
#: joined by a core outside the modelled fabric (``factory.inventory.topology``), and Slurm
#: lets a job span only switches of one tree.
SLURM_CORE_SWITCH = "core"
_K8S_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_TOPOLOGY_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def hashed_id(secret: bytes, prefix: str, kind: str, tenant_id: int | None, pk: int) -> str:
    """``prefix`` + the truncated HMAC of (kind, tenant, pk); ``tenant_id`` None is the
    provider's own (a spare outside every tenant's premises)."""
    message = f"{kind}:{'-' if tenant_id is None else tenant_id}:{pk}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).hexdigest()
    return prefix + digest[:HASH_HEX_DIGITS]


def node_id(secret: bytes, tenant_id: int | None, node_pk: int) -> str:
    return hashed_id(secret, NODE_PREFIX, "network-node", tenant_id, node_pk)


def domain_id(secret: bytes, tenant_id: int | None, ultraserver_pk: int) -> str:
    return hashed_id(secret, DOMAIN_PREFIX, "ultraserver", tenant_id, ultraserver_pk)


def reservation_id(pk: int) -> str:
    """The reservation's ``CapacityBlockId``; its own id, which its tenant already knows."""
    return f"{RESERVATION_PREFIX}{pk}"


def parse_reservation_id(value: str) -> int | None:
    """``cr-12`` or ``12`` as 12; None if it is neither (a positive 64-bit integer)."""
    digits = value.removeprefix(RESERVATION_PREFIX)
    if not (digits.isascii() and digits.isdigit()):
        return None
    number = int(digits)
    return number if 0 < number < 2**63 else None


def node_path(node_pk: int | None, parents: Mapping[int, int | None]) -> tuple[int, ...]:
    """The nodes from the top layer down to ``node_pk`` (its ancestors by ``parents``); empty
    for a server outside the fabric. A broken chain (a parent not given, a loop) stops there."""
    path: list[int] = []
    seen: set[int] = set()
    current = node_pk
    while current is not None and current not in seen:
        seen.add(current)
        path.append(current)
        current = parents.get(current)
    path.reverse()
    return tuple(path)


@dataclass(frozen=True)
class UnitRef:
    id: int
    name: str
    role: str
    state: str


@dataclass(frozen=True)
class ServerTopology:
    """One UltraServer as a tenant sees it: ``network_nodes`` are hashed, top layer first."""

    id: int
    serial: str
    instance_type: str
    site_id: int | None
    site_code: str | None
    network_nodes: tuple[str, ...]
    ultraserver_domain: str
    capacity_block_id: str | None = None
    unit: UnitRef | None = None

    @property
    def zone(self) -> str | None:
        """The zone-like grouping: the site (one building, one fabric)."""
        return self.site_code


def instance(server: ServerTopology) -> dict[str, Any]:
    """The ``instance-topology/`` entry of ``server`` (and of the JSON export)."""
    return {
        "ultraserver": {"id": server.id, "serial": server.serial},
        "instance_type": server.instance_type,
        "site": (
            {"id": server.site_id, "code": server.site_code} if server.site_id is not None else None
        ),
        "zone": server.zone,
        "network_nodes": list(server.network_nodes),
        "capacity_block_id": server.capacity_block_id,
        "ultraserver_domain": server.ultraserver_domain,
        "unit": (
            {
                "id": server.unit.id,
                "name": server.unit.name,
                "role": server.unit.role,
                "state": server.unit.state,
            }
            if server.unit is not None
            else None
        ),
    }


# --- the fabric the servers hang under -------------------------------------------------------


@dataclass(frozen=True)
class Switch:
    """A switch as the exports show it: its hashed id, its layer, the switches and servers
    directly under it (sorted)."""

    id: str
    layer: int
    children: tuple[str, ...]
    nodes: tuple[str, ...]


def fabric(servers: Iterable[ServerTopology]) -> list[Switch]:
    """The switches on the servers' paths, top layer first, then by id. A server hangs under
    the last node of its path; one outside the fabric (empty path) under none."""
    layers: dict[str, int] = {}
    children: dict[str, set[str]] = {}
    nodes: dict[str, set[str]] = {}
    for server in servers:
        path = server.network_nodes
        for depth, switch in enumerate(path, start=1):
            layers.setdefault(switch, depth)
            children.setdefault(switch, set())
            nodes.setdefault(switch, set())
            if depth > 1:
                children[path[depth - 2]].add(switch)
        if path:
            nodes[path[-1]].add(server.serial)
    return [
        Switch(
            switch, layers[switch], tuple(sorted(children[switch])), tuple(sorted(nodes[switch]))
        )
        for switch in sorted(layers, key=lambda s: (layers[s], s))
    ]


def outside_fabric(servers: Iterable[ServerTopology]) -> list[str]:
    """Serials of the servers under no switch (left out of the Slurm topologies)."""
    return sorted(s.serial for s in servers if not s.network_nodes)


# --- Slurm topology.yaml ---------------------------------------------------------------------


def topology_name(scope: str, plugin: str) -> str:
    """A Slurm topology name for ``scope`` (a site code, a reservation id): letters, digits,
    ``-`` and ``_`` only."""
    cleaned = _TOPOLOGY_NAME.sub("-", scope).strip("-").lower() or "efa"
    return f"{cleaned}-{plugin}"


def slurm_tree(servers: Sequence[ServerTopology], name: str) -> list[dict[str, Any]]:
    """``topology.yaml`` for ``topology/tree``: one switch per fabric node, ``children`` its
    switches and ``nodes`` its servers (Slurm hostlists, comma-separated), under a ``core``
    root when there are several top-layer switches."""
    switches: list[dict[str, Any]] = []
    tops = []
    for switch in fabric(servers):
        entry: dict[str, Any] = {"switch": switch.id}
        if switch.children:
            entry["children"] = ",".join(switch.children)
        if switch.nodes:
            entry["nodes"] = ",".join(switch.nodes)
        if switch.layer == 1:
            tops.append(switch.id)
        switches.append(entry)
    if len(tops) > 1:
        switches.insert(0, {"switch": SLURM_CORE_SWITCH, "children": ",".join(tops)})
    return [{"topology": name, "cluster_default": True, "tree": {"switches": switches}}]


def block_sizes(sizes: Sequence[int]) -> list[int]:
    """Slurm's ``block_sizes`` for blocks of ``sizes`` servers: the planning base is the
    smallest block (every block must hold at least that many), then each power-of-two multiple
    of it that as many blocks can make up (``[4, 8, 16]`` for four blocks of 4)."""
    if not sizes:
        return []
    base = min(sizes)
    answer = [base]
    factor = 2
    while factor <= len(sizes):
        answer.append(base * factor)
        factor *= 2
    return answer


def slurm_block(servers: Sequence[ServerTopology], name: str) -> list[dict[str, Any]]:
    """``topology.yaml`` for ``topology/block``: one block per lowest network node, its
    servers as ``nodes``. Blocks are in path order, so blocks under one switch are adjacent
    (Slurm aggregates consecutive blocks into the larger ``block_sizes``)."""
    by_leaf: dict[str, tuple[tuple[str, ...], list[str]]] = {}
    for server in servers:
        if server.network_nodes:
            leaf = server.network_nodes[-1]
            by_leaf.setdefault(leaf, (server.network_nodes, []))[1].append(server.serial)
    ordered = sorted(by_leaf.items(), key=lambda item: item[1][0])
    blocks = [{"block": leaf, "nodes": ",".join(sorted(serials))} for leaf, (_, serials) in ordered]
    sizes = block_sizes([len(serials) for _, (_, serials) in ordered])
    return [
        {
            "topology": name,
            "cluster_default": True,
            "block": {"block_sizes": sizes, "blocks": blocks},
        }
    ]


def slurm_yaml(topologies: list[dict[str, Any]], servers: Sequence[ServerTopology]) -> str:
    """The ``topology.yaml`` text: a header naming what it covers and the servers left out
    (under no switch: Slurm wants every listed node under one), then the topologies."""
    header = ["# topology.yaml for Slurm (topology/tree or topology/block), generated."]
    header.append("# Node names are UltraServer serials; switches and blocks are hashed ids.")
    left_out = outside_fabric(servers)
    if left_out:
        header.append(f"# Outside the EFA fabric, not listed: {', '.join(left_out)}")
    body = yaml.safe_dump(topologies, sort_keys=False, default_flow_style=False)
    return "\n".join(header) + "\n" + body


# --- Kubernetes ------------------------------------------------------------------------------


def k8s_labels(server: ServerTopology) -> dict[str, str]:
    """The node labels of ``server`` as EKS sets them: one per network node layer (hashed ids,
    top layer first), its UltraServer domain, and the zone when it is a valid label value."""
    labels = {
        K8S_LAYER_LABEL.format(depth): node
        for depth, node in enumerate(server.network_nodes, start=1)
    }
    labels[K8S_ULTRASERVER_LABEL] = server.ultraserver_domain
    zone = server.zone
    if zone and len(zone) <= 63 and _K8S_VALUE.match(zone):
        labels[K8S_ZONE_LABEL] = zone
    return labels


def k8s_nodes(servers: Sequence[ServerTopology]) -> list[dict[str, Any]]:
    """``[{name, labels}]`` per server, by serial (the node name)."""
    return [
        {"name": s.serial, "labels": k8s_labels(s)} for s in sorted(servers, key=lambda s: s.serial)
    ]


# --- JSON ------------------------------------------------------------------------------------


def json_export(scope: Mapping[str, Any], servers: Sequence[ServerTopology]) -> dict[str, Any]:
    """Every server's entry and the switches over them (hashed), for tools of one's own."""
    return {
        "scope": dict(scope),
        "Instances": [instance(s) for s in sorted(servers, key=lambda s: s.serial)],
        "NetworkNodes": [
            {
                "id": switch.id,
                "layer": switch.layer,
                "children": list(switch.children),
                "ultraservers": list(switch.nodes),
            }
            for switch in fabric(servers)
        ],
    }


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=False) + "\n"
