"""What a step handler can answer (pure: no Django). The engine turns these into row changes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Done:
    output: dict = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class Wait:
    """Look again after ``seconds`` (or sooner, when the awaited command reports)."""

    seconds: float
    message: str = ""
    external_ref: str | None = None


@dataclass(frozen=True)
class Fail:
    """The step cannot succeed. ``verified_state`` is the hardware's real state, read after the
    failure: the promise is that no server is left failed and unknown."""

    error: str
    verified_state: dict | None = None


Outcome = Done | Wait | Fail
