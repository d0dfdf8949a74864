"""The UltraServer lifecycle as an explicit whitelist of transitions (pure: no Django).

Every in-progress state has its own failed state, so a server is never "somewhere in an upgrade":
it is upgrading, or it failed upgrading and says so. Failed states lead back only through
maintenance (a person looks) or to decommissioning.
"""

from __future__ import annotations

from tenants.errors import Conflict

PLANNED = "planned"
INSTALLING = "installing"
INSTALL_FAILED = "install-failed"
BURN_IN = "burn-in"
BURN_IN_FAILED = "burn-in-failed"
READY = "ready"
IN_SERVICE = "in-service"
DRAINING = "draining"
DRAIN_FAILED = "drain-failed"
MAINTENANCE = "maintenance"
MAINTENANCE_FAILED = "maintenance-failed"
UPGRADING = "upgrading"
UPGRADE_FAILED = "upgrade-failed"
DECOMMISSIONED = "decommissioned"

TRANSITIONS: dict[str, frozenset[str]] = {
    PLANNED: frozenset({INSTALLING, DECOMMISSIONED}),
    INSTALLING: frozenset({BURN_IN, INSTALL_FAILED}),
    INSTALL_FAILED: frozenset({INSTALLING, MAINTENANCE, DECOMMISSIONED}),
    BURN_IN: frozenset({READY, BURN_IN_FAILED, UPGRADING}),
    BURN_IN_FAILED: frozenset({MAINTENANCE, DECOMMISSIONED}),
    READY: frozenset({IN_SERVICE, UPGRADING, DRAINING, MAINTENANCE, DECOMMISSIONED}),
    IN_SERVICE: frozenset({DRAINING, UPGRADING}),
    DRAINING: frozenset({MAINTENANCE, UPGRADING, DRAIN_FAILED, IN_SERVICE}),
    DRAIN_FAILED: frozenset({DRAINING, MAINTENANCE}),
    MAINTENANCE: frozenset(
        {BURN_IN, READY, IN_SERVICE, MAINTENANCE_FAILED, UPGRADING, DECOMMISSIONED}
    ),
    MAINTENANCE_FAILED: frozenset({MAINTENANCE, DECOMMISSIONED}),
    UPGRADING: frozenset({READY, IN_SERVICE, BURN_IN, UPGRADE_FAILED}),
    UPGRADE_FAILED: frozenset({UPGRADING, MAINTENANCE, DECOMMISSIONED}),
    DECOMMISSIONED: frozenset(),
}

#: States in which a server carries (or may carry) customer workload.
SERVING = frozenset({IN_SERVICE})
#: States a workflow holds a server in; nobody else may move it while there.
IN_PROGRESS = frozenset({INSTALLING, BURN_IN, DRAINING, MAINTENANCE, UPGRADING})


class InvalidTransition(Conflict):
    """A change off the whitelist (409), naming the current state and what it allows."""

    def __init__(self, serial: str, current: str, wanted: str) -> None:
        allowed = ", ".join(sorted(TRANSITIONS.get(current, ()))) or "none"
        super().__init__(
            f"UltraServer {serial} is '{current}'; '{current}' → '{wanted}' is not allowed "
            f"(allowed from '{current}': {allowed})",
            code="invalid_transition",
            field="lifecycle_state",
        )
        self.serial, self.current, self.wanted = serial, current, wanted


def can_transition(current: str, wanted: str) -> bool:
    return current == wanted or wanted in TRANSITIONS.get(current, frozenset())


def check_transition(serial: str, current: str, wanted: str) -> None:
    if not can_transition(current, wanted):
        raise InvalidTransition(serial, current, wanted)
