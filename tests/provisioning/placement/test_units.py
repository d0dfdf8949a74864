"""Workload units as services: placed by the solver nearest first, from free capacity or inside
a reservation, with a leader; sovereignty first (a denial writes nothing but its record);
refusals write nothing; releasing frees the members."""

from __future__ import annotations

import pytest

from factory.inventory.models import UltraServer
from provisioning.placement import services
from provisioning.placement.models import UnitMember, WorkloadUnit
from tenants.errors import Conflict, Invalid
from tenants.models import AuditEvent
from tenants.sovereignty import services as sovereignty
from tenants.sovereignty.models import DecisionRecord, ProtectedAsset
from tests.provisioning.placement.reservation_support import CTX, Fab, build_fab, hours
from tests.support.sovereignty import active_rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def fab(fleet) -> Fab:
    return build_fab(fleet.alpha)


def place(fleet, fab, name="rufus", size=3, *, constraint="same_node", max_hops=None, **kw):
    kw.setdefault("spread", "none")
    kw.setdefault("inputs", [])
    return services.place_unit(
        fleet.alpha, fab.site, name, size, constraint, max_hops, kw.pop("spread"),
        kw.pop("inputs"), CTX, **kw,
    )  # fmt: skip


def members(unit: WorkloadUnit) -> set[str]:
    return set(unit.members.filter(state="active").values_list("ultraserver__serial", flat=True))


def test_a_unit_is_placed_under_one_leaf_with_a_leader_and_an_explanation(fleet, fab):
    unit = place(fleet, fab)
    assert unit.state == "active"
    chosen = members(unit)
    assert chosen in (fab.under("L1"), fab.under("L2"))
    roles = list(unit.members.values_list("role", flat=True))
    assert sorted(roles) == ["follower", "follower", "leader"]
    leader = unit.members.get(role="leader").ultraserver.serial
    assert unit.explanation["leader"] == leader
    assert set(unit.explanation["members"]) == chosen
    assert unit.explanation["max_hops"] == 2
    assert AuditEvent.objects.filter(object_type="placement.unitmember").count() == 3
    distances = services.member_distances(unit)
    assert sorted(distances.values()) == [0, 2, 2]


def test_members_of_one_unit_are_not_given_to_another(fleet, fab):
    first = place(fleet, fab, "one")
    second = place(fleet, fab, "two")
    assert not members(first) & members(second)
    with pytest.raises(Conflict) as refused:
        place(fleet, fab, "three")  # only L3's two are usable
    assert (refused.value.code, refused.value.errors[0].field) == ("size", "size")
    assert not WorkloadUnit.objects.filter(name="three").exists()


def test_a_unit_from_free_capacity_leaves_reserved_servers_alone(fleet, fab):
    block = services.reserve(
        fleet.alpha, fab.site, fab.model, 3, hours(0), hours(4), "same_node", None, CTX
    )
    reserved = set(block.holds.values_list("ultraserver__serial", flat=True))
    unit = place(fleet, fab, size=3)
    assert not members(unit) & reserved
    inside = place(fleet, fab, "inside", size=3, reservation=block)
    assert members(inside) == reserved
    assert inside.reservation_id == block.pk


def test_a_unit_goes_only_into_an_active_reservation_of_its_own(fleet, fab):
    later = services.reserve(
        fleet.alpha, fab.site, fab.model, 2, hours(2), hours(4), "same_node", None, CTX
    )
    with pytest.raises(Conflict) as refused:
        place(fleet, fab, size=2, reservation=later)
    assert (refused.value.code, refused.value.errors[0].field) == (
        "reservation_not_active",
        "reservation",
    )
    beta_fab = build_fab(fleet.beta, "BFB1", {"L1": 1})
    theirs = services.reserve(
        fleet.beta, beta_fab.site, beta_fab.model, 1, hours(0), hours(4), "none", None, CTX
    )
    with pytest.raises(Invalid) as other:
        place(fleet, fab, size=1, reservation=theirs)
    assert other.value.errors[0].field == "reservation"
    assert not WorkloadUnit.objects.exists()


def test_spread_across_racks_and_max_hops(fleet, fab):
    unit = place(fleet, fab, size=4, constraint="max_hops", max_hops=4, spread="racks")
    racks = set(UltraServer.objects.filter(serial__in=members(unit)).values_list("rack", flat=True))
    assert len(racks) == 4
    assert unit.explanation["max_hops"] <= 4


def test_a_sovereignty_denial_is_a_403_and_writes_nothing_but_its_record(fleet, fab):
    elsewhere = sovereignty.save_asset(
        ProtectedAsset(
            tenant=fleet.alpha,
            name="weights",
            site=fleet.sites["alpha"],
            kind="dataset",
            classification="internal",
        ),
        CTX,
    )
    active_rule(fleet, "colocation")
    records = DecisionRecord.objects.count()
    with pytest.raises(sovereignty.SovereigntyDenied) as denied:
        place(fleet, fab, inputs=[elsewhere.pk])
    assert denied.value.status == 403
    assert "weights" in denied.value.message
    assert not WorkloadUnit.objects.exists() and not UnitMember.objects.exists()
    assert DecisionRecord.objects.count() > records  # the denial itself is kept

    here = sovereignty.save_asset(
        ProtectedAsset(
            tenant=fleet.alpha,
            name="weights-fab",
            site=fab.site,
            kind="dataset",
            classification="internal",
        ),
        CTX,
    )
    unit = place(fleet, fab, inputs=[here.pk])
    assert unit.inputs == [here.pk]


def test_an_unknown_input_fails_closed(fleet, fab):
    with pytest.raises(sovereignty.SovereigntyDenied):
        place(fleet, fab, inputs=[987654])
    assert not WorkloadUnit.objects.exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"size": 0}, "size"),
        ({"spread": "zones"}, "spread"),
        ({"max_hops": 3}, "max_hops"),
        ({"inputs": ["x"]}, "inputs"),
        ({"max_unavailable": 9}, "max_unavailable"),
    ],
)
def test_bad_input_names_the_field(fleet, fab, changes, field):
    args = {"name": "u", "size": 2, **changes}
    with pytest.raises(Invalid) as refused:
        place(fleet, fab, args.pop("name"), args.pop("size"), **args)
    assert refused.value.errors[0].field == field
    assert not WorkloadUnit.objects.exists()


def test_names_are_unique_per_tenant_until_released(fleet, fab):
    unit = place(fleet, fab, "rufus", size=2)
    with pytest.raises(Conflict) as refused:
        place(fleet, fab, "rufus", size=2)
    assert refused.value.code == "unit_name_taken"
    released = services.release_unit(unit, CTX, reason="done")
    assert released.state == "released" and released.state_reason == "done"
    assert set(released.members.values_list("state", flat=True)) == {"released"}
    again = place(fleet, fab, "rufus", size=2)  # the name and the servers are free again
    assert again.pk != unit.pk
    with pytest.raises(Conflict) as twice:
        services.release_unit(released, CTX)
    assert twice.value.code == "unit_released"


def test_unhealthy_servers_are_never_members(fleet, fab):
    UltraServer.objects.filter(serial__in=["FAB1-L1-1", "FAB1-L2-1"]).update(in_maintenance=True)
    unit = place(fleet, fab, size=2)
    assert not members(unit) & {"FAB1-L1-1", "FAB1-L2-1"}
    assert "in maintenance" in unit.explanation["excluded"]["FAB1-L1-1"]


def test_the_demo_has_an_active_reservation_and_a_running_unit_of_four(db):
    from factory.inventory.demo import demo_fabric_site, load_demo_fleet
    from provisioning.demo import load_demo_placement, load_demo_provisioning
    from provisioning.placement.models import CapacityReservation

    load_demo_fleet()
    load_demo_provisioning()
    load_demo_placement()  # again: idempotent
    block = CapacityReservation.objects.get(site__code=demo_fabric_site())
    assert block.state == "active" and block.holds.count() == 4
    unit = WorkloadUnit.objects.get(site__code=demo_fabric_site())
    assert unit.state == "active" and unit.reservation_id == block.pk
    assert members(unit) == set(block.holds.values_list("ultraserver__serial", flat=True))
    assert sorted(services.member_distances(unit).values()) == [0, 2, 2, 2]
