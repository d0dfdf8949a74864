"""The placement solver (pure core) against exhaustive search on Hypothesis-generated fabrics,
and the explicit cases the API's 409s and the unit lifecycle rely on."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factory.inventory.topology import hops, lowest_common_node
from provisioning.placement import solver
from provisioning.placement.solver import Candidate, Request, Unplaceable, greedy, solve
from tests.support.purity import imported_modules

PROBLEMS = ("unhealthy: 3 chips failed", "held by workflow #12", "feed A: 1.2 kW short")


def domain(c: Candidate, spread: str):
    return tuple(sorted(c.feeds)) if spread == "feeds" else c.rack


def feasible(combo, request: Request) -> bool:
    """The constraint, written from its definition (not from the solver's regions)."""
    if len(combo) > 1:
        if request.constraint == "same_node" and len({c.path for c in combo}) > 1:
            return False
        if request.constraint == "max_hops" and any(
            hops(a.path, b.path) > request.max_hops for a, b in itertools.combinations(combo, 2)
        ):
            return False
    key = None
    if request.spread in ("racks", "feeds"):
        key = request.spread
    elif request.constraint == "spread":
        key = "racks"
    return key is None or len({domain(c, key) for c in combo}) == len(combo)


def near_cost(combo, near) -> int:
    return sum(hops(c.path, p) for c in combo for p in near)


def pair_sum(combo) -> int:
    return sum(hops(a.path, b.path) for a, b in itertools.combinations(combo, 2))


def exhaustive(candidates, request: Request):
    """(nearness, Σ pairwise hops) of the best feasible choice, or None."""
    usable = [c for c in candidates if not c.problems and c.path]
    best = None
    for combo in itertools.combinations(usable, request.size):
        if feasible(combo, request):
            key = (near_cost(combo, request.near), pair_sum(combo))
            best = key if best is None or key < best else best
    return best


@st.composite
def fleets(draw):
    """A random fabric of 2–3 layers (sometimes of mixed depth: servers under an upper node),
    ≤ 11 servers, random racks that may span leaves, feed pairs, problems and empty paths."""
    layers = draw(st.integers(2, 3))
    nodes: list[tuple[str, ...]] = []
    for t in range(draw(st.integers(1, 3))):
        top = (f"s{t}",)
        nodes.append(top)
        for m in range(draw(st.integers(1, 3))):
            mid = (*top, f"l{t}{m}")
            nodes.append(mid)
            if layers == 3:
                for b in range(draw(st.integers(1, 2))):
                    nodes.append((*mid, f"u{t}{m}{b}"))
    deepest = max(len(n) for n in nodes)
    mixed = draw(st.booleans())
    homes = nodes if mixed else [n for n in nodes if len(n) == deepest]
    count = draw(st.integers(1, 11))
    candidates = []
    for i in range(count):
        path = draw(st.sampled_from(homes))
        if draw(st.integers(0, 15)) == 0:
            path = ()
        problems = (draw(st.sampled_from(PROBLEMS)),) if draw(st.integers(0, 4)) == 0 else ()
        feed = draw(st.integers(0, 2))
        candidates.append(
            Candidate(
                id=draw(st.integers(1, 10_000)) * 100 + i,  # unique, not in order
                serial=f"SRV-{i:02d}",
                path=path,
                rack=f"R{draw(st.integers(0, 4))}",
                feeds=(f"A{feed}", f"B{feed}"),
                problems=problems,
            )
        )
    paths = sorted({c.path for c in candidates if c.path})
    near = tuple(draw(st.lists(st.sampled_from(paths), max_size=2))) if paths else ()
    request = Request(
        size=draw(st.integers(1, 4)),
        constraint=draw(st.sampled_from(["same_node", "max_hops", "spread", "none"])),
        max_hops=draw(st.integers(0, 9)),
        spread=draw(st.sampled_from(["none", "none", "racks", "feeds"])),
        near=near if draw(st.booleans()) else (),
    )
    return candidates, request


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets(), st.randoms(use_true_random=False))
def test_solver_is_optimal_and_feasible_against_exhaustive_search(case, rnd):
    candidates, request = case
    best = exhaustive(candidates, request)
    if best is None:
        with pytest.raises(Unplaceable) as exc:
            solve(candidates, request)
        assert exc.value.constraint in ("size", "same_node", "max_hops", "spread")
        assert exc.value.reasons
        return
    placement = solve(candidates, request)
    by_id = {c.id: c for c in candidates}
    members = [by_id[m] for m in placement.members]
    # only usable servers, each once, meeting the constraint
    assert len(set(placement.members)) == request.size
    assert all(not m.problems and m.path for m in members)
    assert feasible(members, request)
    # optimal: nearness first, then the mean pairwise hops
    assert (near_cost(members, request.near), pair_sum(members)) == best
    pairs = max(1, request.size * (request.size - 1) // 2)
    assert placement.mean_hops == pytest.approx(pair_sum(members) / pairs)
    assert placement.max_hops == max(
        (hops(a.path, b.path) for a, b in itertools.combinations(members, 2)), default=0
    )
    assert placement.lowest_common_node == lowest_common_node([m.path for m in members])
    # the leader: least total hops to the others, lowest id on ties; leader first
    total = {m.id: sum(hops(m.path, o.path) for o in members if o is not m) for m in members}
    assert placement.leader == min(total, key=lambda i: (total[i], i))
    assert placement.members[0] == placement.leader
    # deterministic, whatever the candidates' order; the explanation is JSON
    shuffled = list(candidates)
    rnd.shuffle(shuffled)
    assert solve(shuffled, request) == placement
    json.dumps(placement.explanation)
    chosen = placement.explanation["chosen"]
    assert [c["serial"] for c in chosen] == [m.serial for m in members]
    for c in candidates:
        if c.problems or not c.path:
            assert c.serial in placement.explanation["excluded"]


def server(i, path, rack=None, feeds=(), problems=()):
    return Candidate(i, f"S{i:03d}", tuple(path), rack or f"R{i}", tuple(feeds), tuple(problems))


def fabric(per_leaf: dict[tuple[str, str], int], start: int = 1, problems=None):
    """Servers per (spine, leaf), ids in order, one rack each."""
    out, i = [], start
    for (spine, leaf), n in per_leaf.items():
        for _ in range(n):
            out.append(server(i, (spine, leaf), problems=(problems or {}).get(i, ())))
            i += 1
    return out


def test_pure_core_imports_no_django():
    assert not any(m.startswith("django") for m in imported_modules(solver.__file__))


def test_same_node_takes_the_tightest_leaf_that_fits_then_lowest_ids():
    fleet = fabric({("s1", "big"): 30, ("s1", "tight"): 9, ("s2", "small"): 5})
    placement = solve(fleet, Request(8))
    members = {c.id: c for c in fleet}
    assert {members[m].path[-1] for m in placement.members} == {"tight"}
    assert sorted(placement.members) == list(range(31, 39))
    assert placement.mean_hops == 2.0 and placement.max_hops == 2
    assert placement.lowest_common_node == "tight"
    assert placement.leader == 31  # every total is equal: the lowest id leads


def test_same_node_refusal_names_the_largest_leaf():
    fleet = fabric({("s1", "a"): 5, ("s1", "b"): 3}, problems={1: ("unhealthy: 3 chips failed",)})
    with pytest.raises(Unplaceable) as exc:
        solve(fleet, Request(5))
    assert exc.value.constraint == "same_node"
    assert "the largest leaf (a) has 4 usable servers; 5 asked" in exc.value.reasons[0]
    assert exc.value.excluded == {"S001": "unhealthy: 3 chips failed"}
    with pytest.raises(Unplaceable) as exc:
        solve(fleet, Request(8, "none"))
    assert exc.value.constraint == "size"
    assert exc.value.reasons[0] == "7 usable servers; 8 asked"


def test_max_hops_keeps_every_pair_within_the_limit():
    fleet = fabric({("s1", "a"): 3, ("s1", "b"): 3, ("s2", "c"): 6})
    placement = solve(fleet, Request(6, "max_hops", max_hops=4))
    assert placement.max_hops == 2  # leaf c holds six: better than a + b
    placement = solve(fleet[:6] + fleet[6:9], Request(6, "max_hops", max_hops=4))
    assert placement.max_hops == 4 and placement.lowest_common_node == "s1"
    with pytest.raises(Unplaceable) as exc:
        solve(fleet[:6] + fleet[6:9], Request(7, "max_hops", max_hops=4))
    assert exc.value.constraint == "max_hops"
    assert "at most 6 usable servers are within 4 hops" in exc.value.reasons[0]
    placement = solve(fleet[:6] + fleet[6:9], Request(7, "max_hops", max_hops=6))
    assert placement.max_hops == 6 and placement.lowest_common_node is None
    with pytest.raises(Unplaceable) as exc:
        solve(fleet, Request(2, "max_hops", max_hops=1))
    assert exc.value.constraint == "max_hops"


def test_spread_racks_and_feeds_each_member_in_another_domain():
    # leaf a: racks R1 R1 R2; leaf b: R3 R4 R5; spine 2 leaf c: R6..R9
    fleet = [
        server(1, ("s1", "a"), "R1", ("A1", "B1")),
        server(2, ("s1", "a"), "R1", ("A1", "B1")),
        server(3, ("s1", "a"), "R2", ("A1", "B1")),
        server(4, ("s1", "b"), "R3", ("A2", "B2")),
        server(5, ("s1", "b"), "R4", ("A3", "B3")),
        server(6, ("s1", "b"), "R5", ("A4", "B4")),
        *(server(i, ("s2", "c"), f"R{i}", ("A9", "B9")) for i in range(7, 10)),
    ]
    placement = solve(fleet, Request(3, "same_node", spread="racks"))
    assert sorted(placement.members) == [4, 5, 6]  # leaf a has two racks only; b is lower than c
    placement = solve(fleet, Request(3, "spread"))
    assert sorted(placement.members) == [7, 8, 9]  # as near as b, and spine s2 is the tighter fit
    placement = solve(fleet, Request(3, "none", spread="feeds"))
    assert sorted(placement.members) == [4, 5, 6]  # the only leaf with three feed sets
    placement = solve(fleet, Request(4, "max_hops", max_hops=4, spread="feeds"))
    feeds = [next(c.feeds for c in fleet if c.id == m) for m in placement.members]
    assert len(set(feeds)) == 4 and placement.lowest_common_node == "s1"
    with pytest.raises(Unplaceable) as exc:
        solve(fleet, Request(5, "max_hops", max_hops=4, spread="feeds"))
    assert exc.value.constraint == "spread"
    assert "at most 4 distinct feed sets" in exc.value.reasons[0]
    with pytest.raises(Unplaceable) as exc:
        solve(fleet, Request(4, "same_node", spread="racks"))
    assert exc.value.constraint == "same_node"  # no leaf has four servers at all
    with pytest.raises(Unplaceable) as exc:
        solve(fleet[:3] + fleet[6:], Request(3, "same_node", spread="feeds"))
    assert exc.value.constraint == "spread"  # leaves of three, each on one feed set


def test_spread_when_racks_span_leaves_is_matched_not_double_counted():
    # rack X sits under both leaves: each leaf counts it, but only one member may use it
    fleet = [
        server(1, ("s1", "a"), "X"),
        server(2, ("s1", "a"), "Y"),
        server(3, ("s1", "b"), "X"),
        server(4, ("s1", "b"), "Z"),
    ]
    placement = solve(fleet, Request(3, "spread"))
    racks = [next(c.rack for c in fleet if c.id == m) for m in placement.members]
    assert sorted(racks) == ["X", "Y", "Z"]
    with pytest.raises(Unplaceable) as exc:
        solve(fleet, Request(4, "spread"))
    assert exc.value.constraint == "spread"


def test_near_puts_a_replacement_under_the_units_leaf():
    fleet = fabric({("s1", "a"): 5, ("s1", "b"): 2, ("s2", "c"): 1})
    # the unit's remaining members are on leaf b; the tightest single server would be on c
    placement = solve(fleet, Request(1, near=(("s1", "b"), ("s1", "b"))))
    assert placement.members == (6,)
    assert solve(fleet, Request(1)).members == (8,)  # without near: the tightest fit
    # nearness comes before the mean distance: two members next to the unit on b ...
    placement = solve(fleet[:8], Request(2, "none", near=(("s1", "b"),)))
    assert sorted(placement.members) == [6, 7]


def test_excluded_is_bounded_and_counted_by_reason():
    problems = {i: (PROBLEMS[i % 3],) for i in range(1, 291)}
    fleet = [*fabric({("s1", "a"): 300}, problems=problems), server(999, ())]
    placement = solve(fleet, Request(8))
    explanation = placement.explanation
    assert len(explanation["excluded"]) == solver.EXCLUDED_LISTED
    assert explanation["excluded_not_listed"] == 291 - solver.EXCLUDED_LISTED
    assert explanation["excluded_by_reason"] == {
        "unhealthy": 96,
        "held by workflow": 97,
        "feed A": 97,
        "outside the fabric": 1,
    }
    assert explanation["considered"]["usable"] == 10
    assert explanation["considered"]["candidates"] == 301
    assert 999 not in placement.members


def test_bad_requests_are_value_errors():
    fleet = fabric({("s1", "a"): 3})
    for bad in (
        Request(0),
        Request(2, "nearby"),
        Request(2, spread="rooms"),
        Request(2, "max_hops"),
    ):
        with pytest.raises(ValueError):
            solve(fleet, bad)


def test_large_conflicted_spread_falls_back_to_a_feasible_search(monkeypatch):
    """Racks spanning leaves past the branching budget, on a fleet too big for exhaustive
    search: the heuristic (the solver's one non-exact path) still meets the constraint."""
    monkeypatch.setattr(solver, "EXHAUSTIVE_LIMIT", 0)
    monkeypatch.setattr(solver, "BRANCH_BUDGET", 0)
    # leaf l holds racks l and l + 1: any five racks need leaves sharing a rack
    fleet = [server(i, ("s1", f"l{i % 6}"), f"R{i % 6 + (i // 6) % 2}") for i in range(1, 61)]
    placement = solve(fleet, Request(5, "spread"))
    racks = {next(c.rack for c in fleet if c.id == m) for m in placement.members}
    assert len(racks) == 5
    assert placement.explanation["considered"]["method"] == "tree-dp+heuristic"
    assert placement.mean_hops == pytest.approx(3.6)  # two leaves of two racks, one of one
    monkeypatch.setattr(solver, "BRANCH_BUDGET", 4_000)
    exact = solve(fleet, Request(5, "spread"))
    assert exact.explanation["considered"]["method"] == "tree-dp+branching"
    assert exact.mean_hops == pytest.approx(3.6)


def test_solver_never_loses_to_greedy_on_a_large_fleet():
    rng = random.Random(11)
    fleet = [
        server(
            i,
            (f"s{i % 4}", f"l{i % 4}-{(i // 4) % 30}"),
            problems=("unhealthy: fan",) if rng.random() < 0.1 else (),
        )
        for i in range(1, 3001)
    ]
    rng.shuffle(fleet)
    placement = solve(fleet, Request(8, "none"))
    by_id = {c.id: c for c in fleet}
    chosen = greedy(fleet, 8)
    assert placement.mean_hops <= pair_sum([by_id[i] for i in chosen]) / 28
