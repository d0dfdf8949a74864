from provisioning.placement.models.reservations import CapacityReservation, ReservedServer
from provisioning.placement.models.units import UnitMember, UnitReplacement, WorkloadUnit

__all__ = [
    "CapacityReservation",
    "ReservedServer",
    "UnitMember",
    "UnitReplacement",
    "WorkloadUnit",
]
