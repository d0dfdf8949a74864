from django.db import models


class ReservationState(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


#: States in which a reservation holds its servers against other placements.
HOLDING_RESERVATION_STATES = (ReservationState.SCHEDULED, ReservationState.ACTIVE)


class TopologyConstraint(models.TextChoices):
    """How close the members of a reservation or a unit must be in the EFA fabric."""

    SAME_NODE = "same_node", "Under one lowest network node"
    MAX_HOPS = "max_hops", "At most k hops apart"
    SPREAD = "spread", "Spread across failure domains"
    NONE = "none", "No constraint (nearest first)"


class Spread(models.TextChoices):
    """Failure domains a unit's members are spread across (each member in another one)."""

    NONE = "none", "None"
    RACKS = "racks", "Racks"
    FEEDS = "feeds", "Power feeds"


class UnitState(models.TextChoices):
    ACTIVE = "active", "Active"
    DEGRADED = "degraded", "Degraded"
    RELEASED = "released", "Released"


#: States in which a unit holds its members.
HOLDING_UNIT_STATES = (UnitState.ACTIVE, UnitState.DEGRADED)


class MemberRole(models.TextChoices):
    LEADER = "leader", "Leader"
    FOLLOWER = "follower", "Follower"


class MemberState(models.TextChoices):
    ACTIVE = "active", "Active"
    FAILED = "failed", "Failed"
    REPLACED = "replaced", "Replaced"
    RELEASED = "released", "Released"


#: Memberships that hold a server (a failed member keeps its place until it is replaced; the
#: partial unique constraint on ``UnitMember`` is over these).
HOLDING_MEMBER_STATES = (MemberState.ACTIVE, MemberState.FAILED)


class ReplacementState(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    ACCEPTED = "accepted", "Accepted"
    DONE = "done", "Done"
    REJECTED = "rejected", "Rejected"
