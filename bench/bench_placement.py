"""The placement solver vs a greedy nearest-first baseline, on the same fleet, in one run.

Fleet: 7,000 UltraServers (one candidate each) under a 3-layer fabric: 4 spines × 30 leaves,
~58 servers a leaf, racks of 8 in serial order (so some racks span two leaves), a feed pair per
two racks, ~8 % of servers with a problem (unhealthy, held, short of A+B headroom, denied).
Sequence: 100 units of 8 (constraint ``none``: the like-for-like case), each placement taking
its members out of the pool; the solver and the greedy baseline (``solver.greedy``: the first
usable server, then repeatedly the usable server with the least total hops to those chosen)
each run the whole sequence on their own pool, timed alternately call by call so both see the
same noise. Targets: solver time ≤ 10× greedy's; the mean member distance (mean over units of
their mean pairwise hops) ≤ greedy's; and within 5 % of the optimum on 200 random small
fleets (random 2–3-layer fabrics, problems, constraints and spreads) checked by exhaustive
search, with no disagreement on whether a choice exists. Beside them: the solver's time per
placement under ``same_node``, ``max_hops`` and a rack spread, on the same fleet.
``held`` is true only if every ``*_held`` is.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import statistics
import time

from bench.common import RESULTS, write_result

SERVERS, SPINES, LEAVES, RACK_SIZE = 7000, 4, 30, 8
UNITS, UNIT_SIZE, SMALL_INSTANCES = 100, 8, 200
TARGET_TIME_RATIO, TARGET_OPTIMAL_RATIO = 10.0, 1.05
PROBLEMS = (
    "unhealthy: 3 chips failed",
    "held by workflow #12",
    "feed A: 1.2 kW short of A+B headroom",
    "sovereignty: denied by rule 7",
)


def fleet(rng: random.Random):
    from provisioning.placement.solver import Candidate

    leaves = SPINES * LEAVES
    out = []
    for i in range(SERVERS):
        leaf = i * leaves // SERVERS
        rack = i // RACK_SIZE
        out.append(
            Candidate(
                id=i + 1,
                serial=f"BP-{i:05d}",
                path=(f"spine-{leaf // LEAVES}", f"leaf-{leaf}"),
                rack=f"R{rack:04d}",
                feeds=(f"A{rack // 2}", f"B{rack // 2}"),
                problems=(rng.choice(PROBLEMS),) if rng.random() < 0.08 else (),
            )
        )
    return out


def mean_pairwise(paths) -> float:
    from factory.inventory.topology import mean_hops

    return mean_hops(paths) or 0.0


def sequence(pool, request, place) -> tuple[list[float], list[float]]:
    """Seconds per placement and each unit's mean hops; members leave the pool."""
    seconds, distances = [], []
    for _ in range(UNITS):
        start = time.perf_counter()
        members = place(pool, request)
        seconds.append(time.perf_counter() - start)
        chosen = set(members)
        distances.append(mean_pairwise([c.path for c in pool if c.id in chosen]))
        pool[:] = [c for c in pool if c.id not in chosen]
    return seconds, distances


def alternating(pool, request):
    """Solver and greedy on their own copies of the pool, one placement each in turn."""
    from provisioning.placement.solver import greedy, solve

    pools = {"solver": list(pool), "greedy": list(pool)}
    place = {
        "solver": lambda p, r: solve(p, r).members,
        "greedy": lambda p, r: greedy(p, r.size),
    }
    seconds: dict[str, list[float]] = {"solver": [], "greedy": []}
    distances: dict[str, list[float]] = {"solver": [], "greedy": []}
    for _ in range(UNITS):
        for who in ("solver", "greedy"):
            p = pools[who]
            start = time.perf_counter()
            members = place[who](p, request)
            seconds[who].append(time.perf_counter() - start)
            chosen = set(members)
            distances[who].append(mean_pairwise([c.path for c in p if c.id in chosen]))
            pools[who] = [c for c in p if c.id not in chosen]
    return seconds, distances


def small_instance(rng: random.Random):
    """A fabric small enough for exhaustive search (as in the solver's Hypothesis test)."""
    from provisioning.placement.solver import Candidate, Request

    layers = rng.randint(2, 3)
    nodes = []
    for t in range(rng.randint(1, 3)):
        top = (f"s{t}",)
        nodes.append(top)
        for m in range(rng.randint(1, 3)):
            mid = (*top, f"l{t}{m}")
            nodes.append(mid)
            if layers == 3:
                nodes.extend((*mid, f"u{t}{m}{b}") for b in range(rng.randint(1, 2)))
    deepest = max(len(n) for n in nodes)
    homes = nodes if rng.random() < 0.3 else [n for n in nodes if len(n) == deepest]
    candidates = [
        Candidate(
            id=rng.randrange(1, 10_000) * 100 + i,
            serial=f"S{i:02d}",
            path=rng.choice(homes),
            rack=f"R{rng.randrange(5)}",
            feeds=(f"A{(f := rng.randrange(3))}", f"B{f}"),
            problems=(rng.choice(PROBLEMS),) if rng.random() < 0.2 else (),
        )
        for i in range(rng.randint(4, 12))
    ]
    paths = sorted({c.path for c in candidates})
    request = Request(
        size=rng.randint(2, 5),
        constraint=rng.choice(["same_node", "max_hops", "spread", "none"]),
        max_hops=rng.randint(2, 8),
        spread=rng.choice(["none", "none", "racks", "feeds"]),
        near=tuple(rng.sample(paths, 1)) if rng.random() < 0.2 else (),
    )
    return candidates, request


def exhaustive(candidates, request):
    """(nearness, mean pairwise hops) of the best feasible choice, or None."""
    from factory.inventory.topology import hops

    usable = [c for c in candidates if not c.problems and c.path]
    spread = (
        request.spread
        if request.spread != "none"
        else ("racks" if request.constraint == "spread" else None)
    )
    best = None
    for combo in itertools.combinations(usable, request.size):
        pairs = [hops(a.path, b.path) for a, b in itertools.combinations(combo, 2)]
        if request.constraint == "same_node" and len({c.path for c in combo}) > 1:
            continue
        if request.constraint == "max_hops" and max(pairs) > request.max_hops:
            continue
        if spread:
            doms = {c.rack if spread == "racks" else c.feeds for c in combo}
            if len(doms) < len(combo):
                continue
        near = sum(hops(c.path, p) for c in combo for p in request.near)
        key = (near, sum(pairs) / len(pairs))
        best = key if best is None or key < best else best
    return best


def optimality(rng: random.Random) -> dict:
    from factory.inventory.topology import hops
    from provisioning.placement.solver import Unplaceable, solve

    worst, feasible, disagreements, exact = 1.0, 0, 0, 0
    for _ in range(SMALL_INSTANCES):
        candidates, request = small_instance(rng)
        best = exhaustive(candidates, request)
        try:
            placement = solve(candidates, request)
        except Unplaceable:
            disagreements += best is not None
            continue
        if best is None:
            disagreements += 1
            continue
        feasible += 1
        by_id = {c.id: c for c in candidates}
        members = [by_id[m] for m in placement.members]
        near = sum(hops(c.path, p) for c in members for p in request.near)
        if near > best[0]:
            disagreements += 1  # nearness is the first criterion: it must be met exactly
        ratio = placement.mean_hops / best[1] if best[1] else 1.0
        exact += ratio == 1.0 and near == best[0]
        worst = max(worst, ratio)
    return {
        "small_instances": SMALL_INSTANCES,
        "small_feasible": feasible,
        "small_exact": exact,
        "small_disagreements": disagreements,
        "worst_optimal_ratio": round(worst, 4),
    }


def run() -> dict:
    from provisioning.placement.solver import Request, solve

    rng = random.Random(16)
    base = fleet(rng)
    seconds, distances = alternating(base, Request(UNIT_SIZE, "none"))
    solver_ms = statistics.fmean(seconds["solver"]) * 1000
    greedy_ms = statistics.fmean(seconds["greedy"]) * 1000
    solver_hops = statistics.fmean(distances["solver"])
    greedy_hops = statistics.fmean(distances["greedy"])

    others = {}
    for label, request in (
        ("same_node", Request(UNIT_SIZE, "same_node")),
        ("max_hops_4", Request(UNIT_SIZE, "max_hops", max_hops=4)),
        ("same_node_racks", Request(UNIT_SIZE, "same_node", spread="racks")),
        ("spread_racks", Request(UNIT_SIZE, "spread")),
    ):
        secs, dists = sequence(list(base), request, lambda p, r: solve(p, r).members)
        others[f"{label}_ms_per_placement"] = round(statistics.fmean(secs) * 1000, 3)
        others[f"{label}_mean_hops"] = round(statistics.fmean(dists), 3)

    small = optimality(random.Random(5))
    time_ratio = solver_ms / greedy_ms
    result = write_result(
        "placement",
        solver_ms,
        "ms per placement of 8 in 7,000 (solver, mean over 100)",
        greedy_ms,
        TARGET_TIME_RATIO,
        time_ratio_held=time_ratio <= TARGET_TIME_RATIO,
        solver_mean_hops=round(solver_hops, 4),
        greedy_mean_hops=round(greedy_hops, 4),
        distance_ratio=round(solver_hops / greedy_hops, 4),
        distance_held=solver_hops <= greedy_hops,
        solver_p99_ms=round(statistics.quantiles(seconds["solver"], n=100)[98] * 1000, 3),
        greedy_p99_ms=round(statistics.quantiles(seconds["greedy"], n=100)[98] * 1000, 3),
        optimal_target=TARGET_OPTIMAL_RATIO,
        optimal_held=small["worst_optimal_ratio"] <= TARGET_OPTIMAL_RATIO
        and small["small_disagreements"] == 0,
        **small,
        **others,
        ultraservers=SERVERS,
        spines=SPINES,
        leaves=SPINES * LEAVES,
        units=UNITS,
        unit_size=UNIT_SIZE,
        usable=sum(1 for c in base if not c.problems),
        load_average_1m=round(os.getloadavg()[0], 2),
        cpus=os.cpu_count(),
    )
    result["held"] = result["held"] and all(v for k, v in result.items() if k.endswith("_held"))
    (RESULTS / f"{result['name']}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
