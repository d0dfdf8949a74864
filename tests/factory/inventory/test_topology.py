"""The fabric's pure geometry (``factory.inventory.topology``), checked against a reference that
walks an explicit graph: servers, switches and the core above the top layer, links of length 1.
No database."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factory.inventory import topology as t


@dataclass(frozen=True)
class Fabric:
    """A generated fabric: ``parent`` of every switch (None at the top) and, per server, the
    switch it hangs under."""

    parent: dict[str, str | None]
    servers: tuple[str, ...]  # the switch of server i

    def path(self, node: str) -> tuple[str, ...]:
        chain: list[str] = []
        current: str | None = node
        while current is not None:
            chain.append(current)
            current = self.parent[current]
        return tuple(reversed(chain))

    def paths(self) -> list[tuple[str, ...]]:
        return [self.path(node) for node in self.servers]

    def graph_hops(self, i: int, j: int) -> int:
        """Breadth-first distance between servers i and j over every link, the core included."""
        edges: dict[str, set[str]] = {}

        def link(a: str, b: str) -> None:
            edges.setdefault(a, set()).add(b)
            edges.setdefault(b, set()).add(a)

        for node, up in self.parent.items():
            link(node, up if up is not None else "<core>")
        for k, node in enumerate(self.servers):
            link(f"<server {k}>", node)
        start, goal = f"<server {i}>", f"<server {j}>"
        seen, queue = {start: 0}, deque([start])
        while queue:
            here = queue.popleft()
            if here == goal:
                return seen[here]
            for there in edges[here]:
                if there not in seen:
                    seen[there] = seen[here] + 1
                    queue.append(there)
        raise AssertionError("the graph is connected through the core")

    def lca(self, nodes: list[str]) -> str | None:
        """The deepest switch above (or equal to) every one of ``nodes``, by parent pointers."""
        common = set(self.path(nodes[0]))
        for node in nodes[1:]:
            common &= set(self.path(node))
        return max(common, key=lambda n: len(self.path(n))) if common else None


@st.composite
def fabrics(draw, min_servers: int = 2, max_servers: int = 8) -> Fabric:
    """1-3 top switches, 1-4 layers, 1-3 children each; servers under any switch (the core's
    formulas hold for every tree, not only for servers under leaves)."""
    depth = draw(st.integers(1, 4))
    parent: dict[str, str | None] = {}
    counter = itertools.count()
    layer = [f"n{next(counter)}" for _ in range(draw(st.integers(1, 3)))]
    for name in layer:
        parent[name] = None
    for _ in range(depth - 1):
        below = []
        for up in layer:
            for _ in range(draw(st.integers(0, 3))):
                name = f"n{next(counter)}"
                parent[name] = up
                below.append(name)
        if not below:
            break
        layer = below
    switches = sorted(parent)
    servers = draw(st.lists(st.sampled_from(switches), min_size=min_servers, max_size=max_servers))
    return Fabric(parent, tuple(servers))


# --- the examples of the module docstring ---------------------------------------------------


def test_hops_under_one_leaf_one_spine_and_no_common_node():
    assert t.hops(("s1", "l1"), ("s1", "l1")) == 2
    assert t.hops(("s1", "l1"), ("s1", "l2")) == 4
    assert t.hops(("s1", "l1"), ("s2", "l3")) == 6


def test_a_server_outside_the_fabric_has_no_distance():
    assert t.hops((), ("s1", "l1")) is None
    assert t.max_hops([(), ("s1",)]) is None
    assert t.mean_hops([("s1",), ()]) is None
    assert t.lowest_common_node([("s1", "l1"), ()]) is None


def test_lowest_common_node():
    assert t.lowest_common_node([("s1", "l1"), ("s1", "l1")]) == "l1"
    assert t.lowest_common_node([("s1", "l1"), ("s1", "l2"), ("s1", "l1")]) == "s1"
    assert t.lowest_common_node([("s1", "l1"), ("s2", "l1")]) is None  # names repeat below
    assert t.lowest_common_node([("s1",), ("s1", "l1")]) == "s1"
    assert t.lowest_common_node([]) is None


def test_fewer_than_two_paths_are_zero_apart():
    assert t.max_hops([]) == 0
    assert t.max_hops([("s1", "l1")]) == 0
    assert t.mean_hops([("s1", "l1")]) == 0.0


def test_common_depth_stops_at_the_first_difference():
    assert t.common_depth(("a", "b", "c"), ("a", "x", "c")) == 1
    assert t.common_depth(("a", "b"), ("a", "b", "c")) == 2
    assert t.common_depth((), ("a",)) == 0


# --- properties over generated trees --------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(fabrics())
def test_hops_is_the_graph_distance(fabric):
    paths = fabric.paths()
    for i, j in itertools.combinations(range(len(paths)), 2):
        assert t.hops(paths[i], paths[j]) == fabric.graph_hops(i, j)


@settings(max_examples=200, deadline=None)
@given(fabrics())
def test_hops_is_symmetric_and_at_least_two(fabric):
    paths = fabric.paths()
    for a, b in itertools.combinations(paths, 2):
        assert t.hops(a, b) == t.hops(b, a)
        assert t.hops(a, b) >= 2


@settings(max_examples=200, deadline=None)
@given(fabrics(min_servers=3))
def test_triangle_inequality(fabric):
    paths = fabric.paths()
    for a, b, c in itertools.permutations(paths, 3):
        assert t.hops(a, c) <= t.hops(a, b) + t.hops(b, c)


@settings(max_examples=200, deadline=None)
@given(fabrics(min_servers=1))
def test_lowest_common_node_is_the_deepest_shared_ancestor(fabric):
    assert t.lowest_common_node(fabric.paths()) == fabric.lca(list(fabric.servers))


@settings(max_examples=200, deadline=None)
@given(fabrics(min_servers=2))
def test_servers_under_their_lowest_common_node_are_within_its_reach(fabric):
    """Every pair's distance is at most twice the depth below their lowest common node, + 2:
    what a "same lowest node" constraint promises."""
    paths = fabric.paths()
    node = t.lowest_common_node(paths)
    if node is None:
        return
    depth = len(fabric.path(node))
    worst = max(len(p) for p in paths) - depth
    assert t.max_hops(paths) <= 2 * worst + 2


@settings(max_examples=200, deadline=None)
@given(fabrics(min_servers=0))
def test_max_and_mean_hops_match_the_pairs(fabric):
    paths = fabric.paths()
    pairs = [fabric.graph_hops(i, j) for i, j in itertools.combinations(range(len(paths)), 2)]
    assert t.max_hops(paths) == max(pairs, default=0)
    assert t.mean_hops(paths) == pytest.approx(sum(pairs) / len(pairs) if pairs else 0.0)


@settings(max_examples=100, deadline=None)
@given(fabrics(min_servers=0))
def test_paths_of_rebuilds_every_path_from_parents(fabric):
    assert t.paths_of(fabric.parent) == {node: fabric.path(node) for node in fabric.parent}


def test_paths_of_refuses_what_is_not_a_tree():
    with pytest.raises(ValueError, match="own ancestor"):
        t.paths_of({"a": "b", "b": "a"})
    with pytest.raises(ValueError, match="unknown node"):
        t.paths_of({"a": None, "b": "x"})
    assert t.paths_of({}) == {}
