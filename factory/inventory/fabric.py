"""A site's EFA fabric as one document: export, validate as a whole, replace in one transaction;
attach or detach one server. The one home of the fabric's rules, used by the API
(``sites/{id}/fabric/``), the admin and ``manage.py import_fabric``.

The document (what ``GET`` answers and ``PUT`` takes)::

    {
      "layers": ["spine", "leaf"],
      "nodes": [
        {"name": "FRA1-SPINE-1", "layer": 1, "parent": null},
        {"name": "FRA1-LEAF-1", "layer": "leaf", "parent": "FRA1-SPINE-1"}
      ],
      "attachments": {"FRA1-TRN3-0101": "FRA1-LEAF-1", "FRA1-TRN3-0102": null}
    }

- ``layers`` (optional) names the layers top first; the fabric stores layer *numbers* (as
  EC2's ``NetworkNodes`` are numbered), so an export names them by convention (``spine``,
  ``leaf``; ``core`` above a spine). With ``layers`` given, a node's ``layer`` may be its name
  and no node may be deeper than the list.
- ``nodes`` is the whole fabric (replace semantics): a node of the site missing from it is
  deleted, a new name created, a changed layer or parent updated. Parents are named within the
  document. A node with servers attached may not be deleted unless each of them is re-attached
  or detached (``null``) in the same document.
- ``attachments`` maps a server serial to the node it hangs under, one of the lowest layer
  (``layers``' last, or the deepest of the document), or ``null`` to detach it. A server not
  named keeps its node.

Every problem is reported at once, each a ``ValidationError`` under its field path
(``nodes[2].parent``, ``attachments.FRA1-TRN3-0101``); nothing is written unless all pass.
Node changes are audited in the provider's log (a switch is provider data, see
``NetworkNode.owning_tenant_id``); a server's new node in its own audit trail, by id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Q, QuerySet

from factory.inventory import topology
from factory.inventory.models import NetworkNode, Site, UltraServer
from factory.inventory.models.locking import lock_capacity_scope
from tenants.services import audit
from tenants.services.changes import ChangeContext, delete_object, save_object

MAX_LAYERS = 8  # NetworkNode.layer's validator
MAX_NODES = 5000  # a hall's switches, with room; a bigger body is a mistake
NAME_MAX = 64
DOCUMENT_KEYS = frozenset({"layers", "nodes", "attachments"})
NODE_KEYS = frozenset({"name", "layer", "parent"})


def layer_names(depth: int) -> list[str]:
    """The names an export gives ``depth`` layers: the lowest is the leaf, above it the spine,
    above that the core; deeper fabrics number the rest from the top."""
    named = ["core", "spine", "leaf"][-depth:] if depth <= 3 else ["core", "spine", "leaf"]
    return [f"layer-{i}" for i in range(1, depth - len(named) + 1)] + named


@dataclass(frozen=True)
class NodeSpec:
    name: str
    layer: int
    parent: str | None


@dataclass
class FabricSpec:
    """A validated document: the nodes top layer first, the attachment changes by serial."""

    nodes: list[NodeSpec]
    attachments: dict[str, str | None]
    servers: dict[str, UltraServer] = field(default_factory=dict)  # the named and the affected


class _Problems:
    def __init__(self) -> None:
        self.by_path: dict[str, list[ValidationError]] = {}

    def add(self, path: str, code: str, message: str) -> None:
        self.by_path.setdefault(path, []).append(ValidationError(message, code=code))

    def raise_any(self) -> None:
        if self.by_path:
            raise ValidationError(self.by_path)


# --- reading -------------------------------------------------------------------------------


def server_paths(servers: QuerySet[UltraServer]) -> dict[int, topology.Path]:
    """Each attached server's path (node names, top layer first) by server id: two queries
    whatever the count, for the layout export and the topology readers."""
    attached = list(
        servers.filter(network_node__isnull=False).values_list(
            "id", "network_node__site_id", "network_node__name"
        )
    )
    parents: dict[int, dict[str, str | None]] = {}
    for site_id, name, parent in NetworkNode.objects.filter(
        site_id__in={site for _, site, _ in attached}
    ).values_list("site_id", "name", "parent__name"):
        parents.setdefault(site_id, {})[name] = parent
    paths = {site: topology.paths_of(tree) for site, tree in parents.items()}
    return {server: paths[site][name] for server, site, name in attached}


def export_fabric(site: Site) -> dict[str, Any]:
    """The site's fabric as the document ``replace_fabric`` takes: a round trip changes nothing."""
    nodes = list(
        NetworkNode.objects.filter(site=site)
        .select_related("parent")
        .order_by("layer", "name")
        .only("name", "layer", "parent__name")
    )
    depth = max((n.layer for n in nodes), default=0)
    attachments = dict(
        UltraServer.objects.filter(network_node__site=site)
        .order_by("serial")
        .values_list("serial", "network_node__name")
    )
    return {
        "layers": layer_names(depth) if depth else [],
        "nodes": [
            {"name": n.name, "layer": n.layer, "parent": n.parent.name if n.parent else None}
            for n in nodes
        ],
        "attachments": attachments,
    }


# --- validating ----------------------------------------------------------------------------


def _is_name(value: object) -> TypeGuard[str]:
    return (
        isinstance(value, str)
        and 0 < len(value) <= NAME_MAX
        and value.strip() == value
        and value.isprintable()
    )


def _read_layers(data: Mapping[str, Any], problems: _Problems) -> list[str]:
    layers = data.get("layers", [])
    if layers is None:
        return []
    if not isinstance(layers, list) or len(layers) > MAX_LAYERS:
        problems.add(
            "layers", "invalid", f"a list of at most {MAX_LAYERS} layer names, top layer first"
        )
        return []
    for i, name in enumerate(layers):
        if not _is_name(name):
            problems.add(f"layers[{i}]", "invalid", f"a name of 1-{NAME_MAX} characters")
        elif layers.index(name) != i:
            problems.add(f"layers[{i}]", "duplicate", f"layer {name!r} is named twice")
    return [n for n in layers if isinstance(n, str)]


def _read_layer(value: object, layers: list[str], path: str, problems: _Problems) -> int | None:
    if isinstance(value, str) and layers:
        if value in layers:
            return layers.index(value) + 1
        problems.add(path, "layer_unknown", f"{value[:40]!r} is not one of layers {layers}")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(path, "invalid", "a layer number (1 = top) or a name from layers")
        return None
    deepest = len(layers) or MAX_LAYERS
    if not 1 <= value <= deepest:
        problems.add(path, "layer_unknown", f"layer {value} is outside 1-{deepest}")
        return None
    return value


def _read_nodes(
    data: Mapping[str, Any], layers: list[str], problems: _Problems
) -> list[tuple[int, NodeSpec]]:
    raw = data.get("nodes")
    if not isinstance(raw, list):
        problems.add("nodes", "required", "a list of nodes, each {name, layer, parent}")
        return []
    if len(raw) > MAX_NODES:
        problems.add("nodes", "too_many", f"at most {MAX_NODES} nodes")
        return []
    nodes: list[tuple[int, NodeSpec]] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        at = f"nodes[{i}]"
        if not isinstance(item, dict):
            problems.add(at, "invalid", "a node is an object {name, layer, parent}")
            continue
        for key in sorted(set(item) - NODE_KEYS, key=str)[:5]:
            problems.add(f"{at}.{key}", "unknown_field", "a node has name, layer and parent")
        name, parent = item.get("name"), item.get("parent")
        layer = _read_layer(item.get("layer"), layers, f"{at}.layer", problems)
        if not _is_name(name):
            problems.add(f"{at}.name", "invalid", f"a name of 1-{NAME_MAX} characters")
            continue
        if name in seen:
            problems.add(f"{at}.name", "duplicate", f"node {name} is listed twice")
            continue
        seen.add(name)
        if parent is not None and not _is_name(parent):
            problems.add(f"{at}.parent", "invalid", "the parent's name, or null at layer 1")
            continue
        if layer is not None:
            nodes.append((i, NodeSpec(name, layer, parent)))
    return nodes


def _check_tree(nodes: list[tuple[int, NodeSpec]], problems: _Problems) -> None:
    by_name = {spec.name: spec for _, spec in nodes}
    for i, spec in nodes:
        at = f"nodes[{i}].parent"
        if spec.layer == 1:
            if spec.parent is not None:
                problems.add(at, "top_has_parent", f"{spec.name} is at layer 1: no parent")
            continue
        if spec.parent is None:
            problems.add(at, "parent_required", f"{spec.name} is below layer 1: name its parent")
            continue
        parent = by_name.get(spec.parent)
        if parent is None:
            problems.add(
                at, "unknown_parent", f"{spec.parent} is not a node of this document (or site)"
            )
            continue
        if _in_cycle(spec.name, by_name):
            problems.add(at, "cycle", f"{spec.name} is its own ancestor")
        elif parent.layer != spec.layer - 1:
            problems.add(
                at,
                "parent_layer",
                f"{spec.parent} is at layer {parent.layer}; a layer-{spec.layer} node hangs "
                f"under layer {spec.layer - 1}",
            )


def _in_cycle(name: str, by_name: Mapping[str, NodeSpec]) -> bool:
    seen = {name}
    node = by_name[name].parent
    while node is not None and node in by_name:
        if node in seen:
            return True
        seen.add(node)
        node = by_name[node].parent
    return False


def _read_attachments(data: Mapping[str, Any], problems: _Problems) -> dict[str, str | None]:
    raw = data.get("attachments", {})
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.add("attachments", "invalid", "an object: server serial → node name or null")
        return {}
    found: dict[str, str | None] = {}
    for serial, node in raw.items():
        if not _is_name(serial):
            problems.add(f"attachments.{str(serial)[:64]!r}", "invalid", "a server serial")
        elif node is not None and not _is_name(node):
            problems.add(f"attachments.{serial}", "invalid", "a node name, or null to detach")
        else:
            found[str(serial)] = node
    return found


def validate_document(site: Site, data: object) -> FabricSpec:
    """The document, checked as a whole against ``site`` (see the module docstring); raises
    one ``ValidationError`` listing every problem by field path."""
    problems = _Problems()
    if not isinstance(data, dict):
        problems.add("__all__", "invalid", "the fabric is an object {layers, nodes, attachments}")
        problems.raise_any()
    assert isinstance(data, dict)
    for key in sorted(set(data) - DOCUMENT_KEYS, key=str)[:5]:
        problems.add(str(key)[:40], "unknown_field", "the fabric has layers, nodes, attachments")
    layers = _read_layers(data, problems)
    indexed = _read_nodes(data, layers, problems)
    _check_tree(indexed, problems)
    attachments = _read_attachments(data, problems)

    nodes = {spec.name: (i, spec) for i, spec in indexed}
    lowest_layer = len(layers) or max((spec.layer for _, spec in indexed), default=0)

    def lowest_problem(name: str) -> str | None:
        layer = nodes[name][1].layer
        if layer != lowest_layer:
            return (
                f"{name} is at layer {layer}; servers hang under the lowest layer, {lowest_layer}"
            )
        return None

    servers = {
        s.serial: s
        for s in UltraServer.objects.filter(
            Q(serial__in=list(attachments)) | Q(network_node__site=site)
        ).select_related("rack", "network_node")
    }
    for serial, node in attachments.items():
        at = f"attachments.{serial}"
        server = servers.get(serial)
        if server is None:
            problems.add(at, "unknown_server", f"there is no UltraServer {serial[:64]}")
            continue
        at_site = server.rack is not None and server.rack.site_id == site.pk
        hanging_here = server.network_node is not None and server.network_node.site_id == site.pk
        if not at_site and not (node is None and hanging_here):
            problems.add(
                at,
                "server_other_site",
                f"{serial} is not in a rack of {site.code}; attach it at its own site",
            )
            continue
        if node is None:
            continue
        if node not in nodes:
            problems.add(at, "unknown_node", f"{node} is not a node of this document")
            continue
        reason = lowest_problem(node)
        if reason:
            problems.add(at, "not_lowest", reason)
    # Servers the document does not name keep their node: it must stay, and stay a lowest one.
    kept: dict[str, list[str]] = {}
    for server in servers.values():
        current = server.network_node
        if server.serial in attachments or current is None or current.site_id != site.pk:
            continue
        kept.setdefault(current.name, []).append(server.serial)
    for name, serials in sorted(kept.items()):
        shown = ", ".join(sorted(serials)[:5]) + (" ..." if len(serials) > 5 else "")
        if name not in nodes:
            problems.add(
                "nodes",
                "node_in_use",
                f"{name} would be removed but {shown} hang under it; re-attach them (or detach "
                "them with null) in attachments",
            )
        elif reason := lowest_problem(name):
            problems.add(
                f"nodes[{nodes[name][0]}]",
                "servers_attached",
                f"{reason}, and {shown} hang under it; re-attach them in attachments",
            )
    problems.raise_any()
    ordered = sorted((spec for _, spec in indexed), key=lambda s: (s.layer, s.name))
    return FabricSpec(ordered, attachments, servers)


# --- writing -------------------------------------------------------------------------------


def _set_node(server: UltraServer, node: NetworkNode | None, ctx: ChangeContext) -> None:
    """Point a locked server at ``node``; audited into the server's own trail (by node id)."""
    if server.network_node_id == (node.pk if node else None):
        return
    before = audit.snapshot(server)
    server.network_node = node
    server.save(update_fields=["network_node", "updated_at"])
    audit.record_change(ctx, server, before)


def replace_fabric(site: Site, data: object, ctx: ChangeContext) -> dict[str, Any]:
    """Make ``site``'s fabric the document ``data`` (replace semantics), all or nothing.
    Returns the fabric as now stored (``export_fabric``)."""
    with transaction.atomic():
        lock_capacity_scope(site_ids=[site.pk])  # one fabric change per site at a time
        spec = validate_document(site, data)  # under the lock: the servers read stay true
        existing = {n.name: n for n in NetworkNode.objects.select_for_update().filter(site=site)}
        moving = {
            serial: server
            for serial, server in _locked(spec.servers[s].pk for s in spec.attachments).items()
            if (server.network_node.name if server.network_node else None)
            != spec.attachments[serial]
            or (server.network_node is not None and server.network_node.site_id != site.pk)
        }
        befores = {serial: audit.snapshot(server) for serial, server in moving.items()}
        # Servers leave their old nodes first: a node with servers may not gain children.
        UltraServer.objects.filter(pk__in=[s.pk for s in moving.values()]).update(network_node=None)
        wanted = {n.name for n in spec.nodes}
        for node_spec in spec.nodes:  # top layer first: a parent is saved before its children
            node = existing.get(node_spec.name)
            parent = existing[node_spec.parent] if node_spec.parent else None
            if node is None:
                node = NetworkNode(site=site, name=node_spec.name)
            elif node.layer == node_spec.layer and node.parent_id == (parent and parent.pk):
                continue
            node.layer, node.parent = node_spec.layer, parent
            existing[node_spec.name] = save_object(node, ctx)
        for serial, server in moving.items():
            target = spec.attachments[serial]
            server.network_node = existing[target] if target else None
            server.save(update_fields=["network_node", "updated_at"])
            if audit.snapshot(server) != befores[serial]:
                audit.record_change(ctx, server, befores[serial])
        gone = [n for name, n in existing.items() if name not in wanted]
        for node in sorted(gone, key=lambda n: -n.layer):  # children before their parents
            delete_object(node, ctx)
    return export_fabric(site)


def _locked(ids: Iterable[int]) -> dict[str, UltraServer]:
    servers = (
        UltraServer.objects.select_for_update(of=("self",))
        .select_related("network_node")
        .filter(pk__in=sorted(set(ids)))
        .order_by("pk")
    )
    return {s.serial: s for s in servers}


def attachment_problem(server: UltraServer, node: NetworkNode | None) -> tuple[str, str] | None:
    """Why ``server`` may not hang under ``node`` (code, message), or None. Shared by
    ``attach_server`` and the admin's UltraServer form."""
    if node is None:
        return None
    rack = server.rack
    if rack is None:
        return "server_unracked", f"{server.serial} is in no rack; rack it before attaching it"
    if node.site_id != rack.site_id:
        return (
            "node_other_site",
            f"{node.name} is at another site than {server.serial}'s rack {rack.name}",
        )
    lowest = lowest_layer(node.site_id)
    if node.layer != lowest:
        return (
            "not_lowest",
            f"{node.name} is at layer {node.layer}; servers hang under the lowest layer, {lowest}",
        )
    return None


def lowest_layer(site_id: int) -> int:
    """The site's lowest layer (its leaves'): the one servers hang under; 0 without a fabric."""
    deepest = NetworkNode.objects.filter(site_id=site_id).aggregate(m=Max("layer"))["m"]
    return deepest or 0


def attach_server(server: UltraServer, node: NetworkNode | None, ctx: ChangeContext) -> None:
    """Hang one server under ``node`` (None detaches it), validated and audited."""
    with transaction.atomic():
        if server.rack is not None:
            lock_capacity_scope(site_ids=[server.rack.site_id])
        locked = _locked([server.pk])[server.serial]
        problem = attachment_problem(locked, node)
        if problem:
            code, message = problem
            raise ValidationError({"network_node": ValidationError(message, code=code)})
        _set_node(locked, node, ctx)
        server.network_node = node
