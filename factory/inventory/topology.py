"""The EFA fabric's geometry: pure functions over network paths (no Django).

A server's *path* is the tuple of its network nodes from the top layer down to the node
nearest it (EC2's ``NetworkNodes``), e.g. ``("spine-1", "leaf-3")``. Two servers talk through
their lowest common node: the hops between them are the links up from each to that node
(counting the server's own uplink). Servers under one leaf are 2 hops apart; under one spine
and different leaves, 4; with no common node (different top-layer nodes, joined by a core
outside the fabric we model), the path goes over that core: ``len(a) + len(b) + 2``.
A server with an empty path is outside the fabric: it has no distance to anything (None).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

Path = tuple[str, ...]


def common_depth(a: Sequence[str], b: Sequence[str]) -> int:
    """How many layers, from the top, two paths share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def lowest_common_node(paths: Iterable[Sequence[str]]) -> str | None:
    """The deepest node every path passes through, or None (no common node or no paths)."""
    paths = [tuple(p) for p in paths]
    if not paths or any(not p for p in paths):
        return None
    depth = min(len(p) for p in paths)
    first = paths[0]
    for other in paths[1:]:
        depth = min(depth, common_depth(first, other))
    return first[depth - 1] if depth else None


def hops(a: Sequence[str], b: Sequence[str]) -> int | None:
    """Links between two servers with paths ``a`` and ``b`` (see the module docstring). The
    same path is 2 (server → leaf → server); call it only for two different servers."""
    if not a or not b:
        return None
    c = common_depth(a, b)
    return (len(a) - c) + (len(b) - c) + 2


def max_hops(paths: Sequence[Sequence[str]]) -> int | None:
    """The largest distance between two of ``paths`` (0 for fewer than two)."""
    worst = 0
    for i in range(len(paths)):
        for j in range(i + 1, len(paths)):
            h = hops(paths[i], paths[j])
            if h is None:
                return None
            worst = max(worst, h)
    return worst


def mean_hops(paths: Sequence[Sequence[str]]) -> float | None:
    """The mean distance over all pairs of ``paths`` (0.0 for fewer than two)."""
    total = 0
    pairs = 0
    for i in range(len(paths)):
        for j in range(i + 1, len(paths)):
            h = hops(paths[i], paths[j])
            if h is None:
                return None
            total += h
            pairs += 1
    return total / pairs if pairs else 0.0


def paths_of(parents: Mapping[str, str | None]) -> dict[str, Path]:
    """Every node's path (top layer first, the node last) from each node's parent (None at the
    top). Raises ``ValueError`` naming a node whose parent is unknown or that is its own
    ancestor: a fabric is a tree."""
    found: dict[str, Path] = {}
    for start in parents:
        chain: list[str] = []
        node: str | None = start
        while node is not None and node not in found:
            if node in chain:
                raise ValueError(f"{node} is its own ancestor")
            if node not in parents:
                raise ValueError(f"{chain[-1]} hangs under an unknown node {node}")
            chain.append(node)
            node = parents[node]
        prefix = found[node] if node is not None else ()
        for name in reversed(chain):
            prefix = (*prefix, name)
            found[name] = prefix
    return found
