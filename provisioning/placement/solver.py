"""The one placement solver: which servers form a unit (or honour a reservation). Pure core:
no Django; the service layer (``provisioning.placement.services``) builds the candidates from
inventory, health, holds, power and sovereignty and stores what this returns.

How it works (why it is exact and fast). ``hops`` (``factory.inventory.topology``) is the tree
distance in the fabric with a virtual core above the top layer and each server hanging one link
below its lowest node. The sum of pairwise hops of ``k`` members is therefore
``Σ_links x·(k − x)`` over the links, ``x`` members below each, so it depends only on how many
members sit below each node. A knapsack over the fabric tree (per node: the best cost for
``j = 0..k`` members below it) finds the optimum in O(nodes · k²), with servers that share a
path counted together: no pair enumeration over the fleet. The ranking is lexicographic:
nearness to ``request.near`` (total hops to those paths), then the pairwise hops, then the
tightest fit (usable servers left over in every node touched), then the lowest ids.

Constraints are *regions* the members must fit in: ``same_node`` one path, ``max_hops`` one
ball of radius ``max_hops / 2`` around a node or link midpoint (in a tree, a set of diameter
≤ D lies within D/2 of the middle of its longest path; with every path the same length these
are the subtrees at one depth), ``none`` and ``spread`` the whole fleet. A spread (racks or
feed sets) counts one usable server per failure domain and path; when a domain spans two paths
the allocation is checked by a matching, and if that fails the solver branches on a shared
domain (kept on one path per branch), best-first by the knapsack's bound, which stays exact.
Past ``BRANCH_BUDGET`` a region is searched exhaustively (small) or by a heuristic with local
search (large): the one non-exact case, named ``tree-dp+heuristic`` in the explanation.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from factory.inventory.topology import hops, lowest_common_node

Path = tuple[str, ...]
#: (nearness, Σ pairwise hops, spare servers left in the nodes touched, Σ ids): lower wins.
Key = tuple[int, int, int, int]
Alloc = tuple[tuple[Path, int], ...]
#: A member's failure domain (its rack, or its feed set) for a spread.
Domain = Callable[["Candidate"], object]

CONSTRAINTS = ("same_node", "max_hops", "spread", "none")
SPREADS = ("none", "racks", "feeds")
#: How many excluded serials the explanation lists (the rest are counted by reason).
EXCLUDED_LISTED = 50
#: Knapsack work (paths visited) allowed for branching on shared spread domains, after which a
#: conflicted region is searched exhaustively (if small) or heuristically.
BRANCH_BUDGET = 4_000
#: Above this many (path, domain) combinations a conflicted spread region is searched greedily.
EXHAUSTIVE_LIMIT = 20_000


@dataclass(frozen=True)
class Candidate:
    """A server the solver may consider. ``problems`` non-empty means it may not be used; each
    problem is a short reason (``"unhealthy: 3 chips failed"``, ``"held by workflow #12"``,
    ``"feed A: 1.2 kW short of A+B headroom"``, ``"sovereignty: denied by rule 7"``) and goes
    into the explanation as why it was excluded."""

    id: int
    serial: str
    path: tuple[str, ...]  # network node keys, top layer first (factory.inventory.topology)
    rack: str
    feeds: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Request:
    """What to place: ``size`` members under ``constraint`` (``same_node``: one lowest network
    node; ``max_hops``: no two members more than ``max_hops`` apart; ``spread``: each member in
    another rack (or feed, per ``spread``); ``none``: nearest first), optionally spread across
    racks/feeds (``spread`` = ``none`` / ``racks`` / ``feeds``) on top of the constraint.
    ``near``: paths to stay close to (a replacement lands under its unit's node)."""

    size: int
    constraint: str = "same_node"
    max_hops: int | None = None
    spread: str = "none"
    near: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Placement:
    """The chosen members (leader first), their distances and why."""

    members: tuple[int, ...]
    leader: int
    mean_hops: float
    max_hops: int
    lowest_common_node: str | None
    explanation: dict = field(default_factory=dict)


class Unplaceable(Exception):
    """No choice meets ``constraint`` (the field or rule the 409 names); ``reasons`` say why,
    ``excluded`` maps serial → why it could not be used."""

    def __init__(self, constraint: str, reasons: list[str], excluded: dict[str, str]):
        super().__init__("; ".join(reasons))
        self.constraint = constraint
        self.reasons = reasons
        self.excluded = excluded


# --------------------------------------------------------------------------------------------
# Inputs


def validate(request: Request) -> None:
    """Malformed requests are the caller's bug (serializers validate first): ValueError."""
    if request.size < 1:
        raise ValueError("size must be at least 1")
    if request.constraint not in CONSTRAINTS:
        raise ValueError(f"constraint must be one of {', '.join(CONSTRAINTS)}")
    if request.spread not in SPREADS:
        raise ValueError(f"spread must be one of {', '.join(SPREADS)}")
    if request.constraint == "max_hops" and (request.max_hops is None or request.max_hops < 0):
        raise ValueError("max_hops needs a non-negative max_hops")


def exclusion(candidate: Candidate) -> str | None:
    """Why ``candidate`` may not be chosen, or None."""
    if candidate.problems:
        return "; ".join(candidate.problems)
    if not candidate.path:
        return "outside the fabric: no network path"
    return None


def reason_kind(reason: str) -> str:
    """``"held by workflow #12"`` → ``"held by workflow"``: the countable part of a reason."""
    return reason.split(";")[0].split(":")[0].split("#")[0].strip() or reason


def summarise_excluded(excluded: Sequence[tuple[Candidate, str]]) -> dict:
    """Bounded for big fleets: the first serials (by serial) with their reasons, every reason
    counted by kind, and how many serials were left out."""
    ordered = sorted(excluded, key=lambda e: (e[0].serial, e[0].id))
    listed = {c.serial: reason for c, reason in ordered[:EXCLUDED_LISTED]}
    return {
        "servers": listed,
        "by_reason": dict(sorted(Counter(reason_kind(r) for _, r in excluded).items())),
        "not_listed": max(0, len(ordered) - EXCLUDED_LISTED),
    }


def spread_key(request: Request) -> Domain | None:
    """The failure domain two members may not share, if any."""
    if request.spread == "feeds":
        return lambda c: tuple(sorted(c.feeds))
    if request.spread == "racks" or request.constraint == "spread":
        return lambda c: c.rack
    return None


# --------------------------------------------------------------------------------------------
# The tree knapsack


def _add(a: Key, b: Key) -> Key:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3])


ZERO: Key = (0, 0, 0, 0)


def tree_best(picks: dict[Path, list[Candidate]], k: int, near: dict[Path, int]) -> dict:
    """Per fabric node (path prefix, ``()`` = the core): ``F[node][j]`` = ``(key, alloc)`` of the
    best ``j`` members below it (None if impossible), counting the links inside its subtree and
    the one above it. ``picks`` are the usable servers per path, lowest id first."""
    children: dict[Path, list[Path]] = defaultdict(list)
    nodes: set[Path] = {()}
    for p in picks:
        for i in range(1, len(p) + 1):
            if p[:i] not in nodes:
                nodes.add(p[:i])
                children[p[: i - 1]].append(p[:i])
    F: dict[Path, list] = {}
    cap: dict[Path, int] = {}
    for u in sorted(nodes, key=lambda n: (-len(n), n)):
        own = picks.get(u, [])
        total = len(own) + sum(cap[c] for c in children[u])
        cap[u] = total
        top = min(k, total)
        # members hanging directly below u: their own uplinks (x = 1: k - 1 each)
        vec: list = [None] * (top + 1)
        vec[0] = (ZERO, ())
        ids = 0
        w = near.get(u, 0)
        for j in range(1, min(k, len(own)) + 1):
            ids += own[j - 1].id
            vec[j] = ((j * w, j * (k - 1), 0, ids), ((u, j),))
        for c in sorted(children[u]):
            fc = F[c]
            merged: list = [None] * (top + 1)
            for a, va in enumerate(vec):
                if va is None:
                    continue
                for b, vb in enumerate(fc):
                    if vb is None or a + b > top:
                        continue
                    key = _add(va[0], vb[0])
                    cur = merged[a + b]
                    if cur is None or key < cur[0]:
                        merged[a + b] = (key, va[1] + vb[1])
            vec = merged
        if u:  # the link above u, and the spare servers this subtree keeps
            for j in range(1, top + 1):
                if vec[j] is not None:
                    key, alloc = vec[j]
                    vec[j] = ((key[0], key[1] + j * (k - j), key[2] + total - j, key[3]), alloc)
        F[u] = vec
    return F


# --------------------------------------------------------------------------------------------
# Regions (where a constraint lets the members be)


@dataclass
class _Region:
    label: str | None  # the node it is anchored at (for reasons), None for the whole fabric
    paths: list[Path]


def _dist2(path: Path, centre: Path, half: bool) -> int:
    """Twice the hops from a server on ``path`` to the node ``centre`` (or to the midpoint of
    the link above it when ``half``)."""

    def d(node: Path) -> int:
        c = 0
        for x, y in zip(path, node, strict=False):
            if x != y:
                break
            c += 1
        return (len(path) + 1 - c) + (len(node) - c)

    if half:
        return min(2 * d(centre), 2 * d(centre[:-1])) + 1
    return 2 * d(centre)


def regions(request: Request, paths: list[Path]) -> list[_Region]:
    """The maximal sets of paths a feasible choice must lie in, by constraint."""
    k = request.size
    if k == 1 or request.constraint in ("none", "spread"):
        return [_Region(None, paths)]
    if request.constraint == "same_node":
        return [_Region(p[-1], [p]) for p in paths]
    limit = request.max_hops or 0
    depths = {len(p) for p in paths}
    if len(depths) == 1:
        (length,) = depths
        # two servers with common depth c are 2(L - c) + 2 apart
        c_min = max(0, math.ceil((2 * length + 2 - limit) / 2))
        if c_min > length:
            return []
        by_anchor: dict[Path, list[Path]] = defaultdict(list)
        for p in paths:
            by_anchor[p[:c_min]].append(p)
        return [_Region(a[-1] if a else None, ps) for a, ps in sorted(by_anchor.items())]
    # fabrics of mixed depth: every ball around a node or link midpoint, maximal ones only
    nodes = {p[:i] for p in paths for i in range(len(p) + 1)}
    seen: dict[frozenset[Path], Path] = {}
    for centre in sorted(nodes):
        for half in (False, True) if centre else (False,):
            inside = frozenset(p for p in paths if _dist2(p, centre, half) <= limit)
            if inside and inside not in seen:
                seen[inside] = centre
    sets = sorted(seen, key=len, reverse=True)
    maximal = [s for i, s in enumerate(sets) if not any(s < t for t in sets[:i])]
    return [
        _Region(seen[s][-1] if seen[s] else None, sorted(s))
        for s in sorted(maximal, key=lambda s: sorted(s))
    ]


# --------------------------------------------------------------------------------------------
# Costs of explicit choices (for the spread fallback and the explanation)


def _near_cost(path: Path, near: Sequence[Path]) -> int:
    return sum(h for p in near if (h := hops(path, p)) is not None)


def key_of(members: Sequence[Candidate], region_cap: dict[Path, int], near: dict[Path, int]) -> Key:
    """The ranking key of an explicit choice, the same as the knapsack's."""
    k = len(members)
    below: Counter[Path] = Counter()
    for m in members:
        for i in range(1, len(m.path) + 1):
            below[m.path[:i]] += 1
    # each member's own uplink carries 1 · (k − 1) pairs, a node's uplink x · (k − x)
    pair = sum(x * (k - x) for x in below.values()) + (k - 1) * k
    spare = sum(region_cap.get(n, 0) - x for n, x in below.items())
    return (
        sum(near.get(m.path, 0) for m in members),
        pair,
        spare,
        sum(m.id for m in members),
    )


def _subtree_caps(picks: dict[Path, list[Candidate]]) -> dict[Path, int]:
    caps: Counter[Path] = Counter()
    for p, servers in picks.items():
        for i in range(1, len(p) + 1):
            caps[p[:i]] += len(servers)
    return dict(caps)


def _match(alloc: Alloc, picks: dict[Path, list[Candidate]], key: Domain) -> list[Candidate] | None:
    """Distinct failure domains for the allocation's slots (Kuhn's augmenting paths), or None."""
    slots = [p for p, n in alloc for _ in range(n)]
    owner: dict[object, int] = {}
    options = [[(key(c), c) for c in picks[p]] for p in slots]

    def augment(i: int, seen: set) -> bool:
        for dom, _ in options[i]:
            if dom in seen:
                continue
            seen.add(dom)
            if dom not in owner or augment(owner[dom], seen):
                owner[dom] = i
                return True
        return False

    for i in range(len(slots)):
        if not augment(i, set()):
            return None
    chosen: dict[int, Candidate] = {}
    for dom, i in owner.items():
        chosen[i] = next(c for d, c in options[i] if d == dom)
    return [chosen[i] for i in range(len(slots))]


def _shared_domain(alloc: Alloc, picks: dict[Path, list[Candidate]], key: Domain) -> object:
    """A domain two of the allocation's paths both offer (there is one when the allocation
    cannot be matched: one path offers each domain once)."""
    seen: dict[object, Path] = {}
    for p, _ in alloc:
        for c in picks[p]:
            d = key(c)
            if d in seen and seen[d] != p:
                return d
            seen.setdefault(d, p)
    raise AssertionError("an unmatched allocation shares a domain")


def _search(
    picks: dict[Path, list[Candidate]],
    k: int,
    key: Domain,
    near: dict[Path, int],
    alloc: Alloc,
    caps: dict[Path, int],
) -> tuple[Key, list[Candidate], str] | None:
    """The best choice with distinct domains in a region where domains span paths and the
    knapsack's allocation could not be matched: exhaustive over (path, domain) classes when that
    is small (exact), else the better of two feasible heuristics (the one non-exact case): the
    knapsack again with each shared domain given to one path only (where the allocation wanted
    most members), and nearest-first over paths from each path the allocation used, each
    improved by swapping single members while that helps."""
    classes: list[Candidate] = []
    for p in sorted(picks):
        classes.extend(picks[p])  # one per domain and path already
    if len({key(c) for c in classes}) < k:
        return None
    best: tuple[Key, list[Candidate]] | None = None
    if math.comb(len(classes), k) <= EXHAUSTIVE_LIMIT:
        for combo in itertools.combinations(classes, k):
            if len({key(c) for c in combo}) < k:
                continue
            kk = key_of(combo, caps, near)
            if best is None or kk < best[0]:
                best = (kk, list(combo))
        return (best[0], best[1], "exhaustive") if best else None
    wanted = dict(alloc)
    owner: dict[object, Path] = {}
    for p in sorted(picks, key=lambda p: (-wanted.get(p, 0), -len(picks[p]), p)):
        for c in picks[p]:
            owner.setdefault(key(c), p)
    reduced = {p: [c for c in cs if owner[key(c)] == p] for p, cs in picks.items()}
    reduced = {p: cs for p, cs in reduced.items() if cs}
    top = tree_best(reduced, k, near)[()][k]
    if top is not None:
        chosen = [c for p, n in top[1] for c in reduced[p][:n]]
        best = (key_of(chosen, caps, near), chosen)
    paths = sorted(picks)
    for seed in [p for p, _ in alloc]:
        chosen = []
        used: set = set()
        total = dict.fromkeys(paths, 0)
        at = seed
        while True:
            pick = next(c for c in picks[at] if key(c) not in used)
            chosen.append(pick)
            used.add(key(pick))
            if len(chosen) == k:
                break
            for p in paths:
                total[p] += hops(p, at) or 0
            at = min(
                (p for p in paths if any(key(c) not in used for c in picks[p])),
                key=lambda p: (near.get(p, 0), total[p], p),
            )
        kk = key_of(chosen, caps, near)
        if best is None or kk < best[0]:
            best = (kk, chosen)
    if best is None:
        return None
    return (*_improve(best[1], picks, key, near, caps), "heuristic")


def _improve(
    chosen: list[Candidate],
    picks: dict[Path, list[Candidate]],
    key: Domain,
    near: dict[Path, int],
    caps: dict[Path, int],
) -> tuple[Key, list[Candidate]]:
    """Local search: replace one member by the lowest-id server of another path whose domain
    is free, while the ranking key improves (bounded passes)."""
    current = key_of(chosen, caps, near)
    for _ in range(4 * len(chosen)):
        improved = False
        for i in range(len(chosen)):
            used = {key(c) for j, c in enumerate(chosen) if j != i}
            taken = {c.id for c in chosen}
            for p in sorted(picks):
                swap = next((c for c in picks[p] if key(c) not in used and c.id not in taken), None)
                if swap is None:
                    continue
                trial = [*chosen[:i], swap, *chosen[i + 1 :]]
                kk = key_of(trial, caps, near)
                if kk < current:
                    chosen, current, improved = trial, kk, True
                    break
        if not improved:
            break
    return current, chosen


# --------------------------------------------------------------------------------------------
# The solver


def solve(candidates: list[Candidate], request: Request) -> Placement:
    """Choose ``request.size`` members: see the module docstring; raises ``Unplaceable``."""
    validate(request)
    k = request.size
    usable: list[Candidate] = []
    excluded: list[tuple[Candidate, str]] = []
    for c in candidates:
        why = exclusion(c)
        if why is None:
            usable.append(c)
        else:
            excluded.append((c, why))
    summary = summarise_excluded(excluded)
    listed: dict[str, str] = summary["servers"]

    def refuse(constraint: str, reason: str) -> Unplaceable:
        reasons = [reason]
        if excluded:
            counts = ", ".join(f"{n} {kind}" for kind, n in summary["by_reason"].items())
            reasons.append(f"{len(excluded)} of {len(candidates)} candidates excluded ({counts})")
        return Unplaceable(constraint, reasons, listed)

    if len(usable) < k:
        raise refuse("size", f"{len(usable)} usable servers; {k} asked")

    domain = spread_key(request)
    groups: dict[Path, list[Candidate]] = defaultdict(list)
    for c in sorted(usable, key=lambda c: c.id):
        groups[c.path].append(c)
    picks: dict[Path, list[Candidate]] = {}
    for p, servers in groups.items():
        if domain is None:
            picks[p] = servers
        else:
            first: dict[object, Candidate] = {}
            for c in servers:
                first.setdefault(domain(c), c)
            picks[p] = sorted(first.values(), key=lambda c: c.id)
    near = {p: _near_cost(p, request.near) for p in groups} if request.near else {}
    paths = sorted(groups)
    found = regions(request, paths)
    what = {"racks": "racks", "feeds": "feed sets"}.get(request.spread, "racks")

    # which regions can hold k at all (servers), and k distinct domains
    viable: list[tuple[_Region, dict[Path, list[Candidate]]]] = []
    best_servers: tuple[int, str | None] = (0, None)
    best_domains: tuple[int, str | None] = (0, None)
    for region in found:
        n = sum(len(groups[p]) for p in region.paths)
        best_servers = max(best_servers, (n, region.label), key=lambda t: t[0])
        if n < k:
            continue
        sub = {p: picks[p] for p in region.paths}
        d = len({domain(c) for cs in sub.values() for c in cs}) if domain else n
        best_domains = max(best_domains, (d, region.label), key=lambda t: t[0])
        if d >= k:
            viable.append((region, sub))
    if not viable:
        if request.constraint == "max_hops" and not found:
            raise refuse(
                "max_hops",
                f"no two servers are within {request.max_hops} hops (two servers are at least "
                f"2 apart); {k} asked",
            )
        if best_servers[0] < k:
            if request.constraint == "same_node":
                raise refuse(
                    "same_node",
                    f"the largest leaf ({best_servers[1]}) has {best_servers[0]} usable "
                    f"servers; {k} asked",
                )
            raise refuse(
                "max_hops",
                f"at most {best_servers[0]} usable servers are within {request.max_hops} hops "
                f"of each other (under {best_servers[1] or 'the core'}); {k} asked",
            )
        where = f" under one node ({best_domains[1]})" if best_domains[1] else ""
        raise refuse(
            "spread",
            f"at most {best_domains[0]} distinct {what} among usable servers{where}; {k} asked",
        )

    # best first by the knapsack's bound (a lower bound of each region). A spread allocation
    # that cannot be matched to distinct domains is branched on a domain two of its paths
    # share (that domain kept on one path only, per branch); past the budget, searched
    # heuristically. The search stops once no bound can beat the best real choice.
    heap: list = []
    order = itertools.count()
    for region, sub in viable:
        top = tree_best(sub, k, near)[()][k]
        if top is not None:
            heapq.heappush(heap, (top[0], next(order), region, sub, sub, top[1]))
    best: tuple[Key, list[Candidate], _Region] | None = None
    budget = BRANCH_BUDGET
    searched_regions: set[int] = set()
    method = "tree-dp"
    while heap:
        bound, _, region, sub, variant, alloc = heapq.heappop(heap)
        if best is not None and best[0] <= bound:
            break
        if domain is None:
            best = (bound, [c for p, n in alloc for c in variant[p][:n]], region)
            break
        matched = _match(alloc, variant, domain)
        if matched is not None:
            real = key_of(matched, _subtree_caps(sub), near)
            if best is None or real < best[0]:
                best = (real, matched, region)
            continue
        if budget <= 0:
            if id(region) in searched_regions:
                continue  # the region's own search already covers this branch
            searched_regions.add(id(region))
            searched = _search(sub, k, domain, near, alloc, _subtree_caps(sub))
            method = f"tree-dp+{searched[2]}" if searched else method
            if searched is not None and (best is None or searched[0] < best[0]):
                best = (searched[0], searched[1], region)
            continue
        method = "tree-dp+branching" if method == "tree-dp" else method
        shared = _shared_domain(alloc, variant, domain)
        holders = sorted(p for p, cs in variant.items() if any(domain(c) == shared for c in cs))
        for keep in holders:
            child = {
                p: kept
                for p, cs in variant.items()
                if (kept := cs if p == keep else [c for c in cs if domain(c) != shared])
            }
            budget -= len(child)
            if len({domain(c) for cs in child.values() for c in cs}) < k:
                continue
            top = tree_best(child, k, near)[()][k]
            if top is not None:
                heapq.heappush(heap, (top[0], next(order), region, sub, child, top[1]))
    assert best is not None  # every viable region has k distinct domains
    _, chosen, region = best
    return _placement(
        chosen,
        request,
        region,
        method,
        summary,
        considered={
            "candidates": len(candidates),
            "usable": len(usable),
            "excluded": len(excluded),
            "paths": len(groups),
            "regions": len(found),
            "viable_regions": len(viable),
            "method": method,
        },
        region_servers=sum(len(groups[p]) for p in region.paths),
    )


def _leader(members: Sequence[Candidate]) -> tuple[Candidate, dict[int, int]]:
    sums = {m.id: sum(hops(m.path, o.path) or 0 for o in members if o is not m) for m in members}
    leader = min(members, key=lambda m: (sums[m.id], m.id))
    return leader, sums


def _placement(
    chosen: Sequence[Candidate],
    request: Request,
    region: _Region | None,
    method: str,
    excluded: dict,
    considered: dict,
    region_servers: int,
) -> Placement:
    leader, sums = _leader(chosen)
    ordered = [leader, *sorted((m for m in chosen if m is not leader), key=lambda m: m.id)]
    paths = [m.path for m in ordered]
    pairs = [hops(a.path, b.path) or 0 for a, b in itertools.combinations(ordered, 2)]
    mean = sum(pairs) / len(pairs) if pairs else 0.0
    worst = max(pairs, default=0)
    lcn = lowest_common_node(paths)
    where = {
        "same_node": f"the tightest lowest node that fits ({region_servers} usable servers)",
        "max_hops": f"within {request.max_hops} hops of each other",
        "spread": "each in another failure domain, nearest first",
        "none": "nearest first",
    }[request.constraint]
    if request.spread != "none" and request.constraint != "spread":
        where += f", each in another {'rack' if request.spread == 'racks' else 'feed set'}"
    near_note = " near the given nodes," if request.near else ""
    members = []
    for m in ordered:
        role = "leader" if m is leader else "follower"
        why = (
            f"least total hops to the other members ({sums[m.id]})"
            if m is leader
            else f"{sums[m.id]} hops in total to the other members"
        )
        members.append(
            {
                "id": m.id,
                "serial": m.serial,
                "node": m.path[-1],
                "rack": m.rack,
                "role": role,
                "why": f"{role}: {why};{near_note} {where}",
            }
        )
    explanation = {
        "request": {
            "size": request.size,
            "constraint": request.constraint,
            "max_hops": request.max_hops,
            "spread": request.spread,
            "near": [list(p) for p in request.near],
        },
        "chosen": members,
        "lowest_common_node": lcn,
        "mean_hops": mean,
        "max_hops": worst,
        "excluded": excluded["servers"],
        "excluded_by_reason": excluded["by_reason"],
        "excluded_not_listed": excluded["not_listed"],
        "considered": considered,
    }
    return Placement(
        members=tuple(m.id for m in ordered),
        leader=leader.id,
        mean_hops=mean,
        max_hops=worst,
        lowest_common_node=lcn,
        explanation=explanation,
    )


def greedy(candidates: Iterable[Candidate], size: int) -> list[int]:
    """The baseline the bench compares against: the first usable server, then repeatedly the
    usable server nearest (least total hops) to those chosen. No constraint, no tie-breaks."""
    pool = [c for c in candidates if not c.problems and c.path]
    if len(pool) < size:
        raise Unplaceable("size", [f"{len(pool)} usable servers; {size} asked"], {})
    chosen = [pool[0]]
    taken = {0}
    total = [0] * len(pool)
    while len(chosen) < size:
        last = chosen[-1].path
        best_i, best_d = -1, 0
        for i, c in enumerate(pool):
            if i in taken:
                continue
            total[i] += hops(c.path, last) or 0
            if best_i < 0 or total[i] < best_d:
                best_i, best_d = i, total[i]
        chosen.append(pool[best_i])
        taken.add(best_i)
    return [c.id for c in chosen]
