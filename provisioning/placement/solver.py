"""The one placement solver: which servers form a unit (or honour a reservation). Pure core:
no Django; the service layer (``provisioning.placement.services``) builds the candidates from
inventory, health, holds, power and sovereignty and stores what this returns.

INTERFACE FIXED HERE (helpers build against it); the body of ``solve`` is to be written.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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


def solve(candidates: list[Candidate], request: Request) -> Placement:
    raise NotImplementedError
