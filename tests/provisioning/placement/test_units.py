"""Workload units as services: placed by the solver nearest first, from free capacity or inside
a reservation, with a leader; sovereignty first (a denial writes nothing but its record);
refusals write nothing; releasing frees the members."""

from __future__ import annotations

import dataclasses

import pytest

from factory.catalog.models import UltraServerModel
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
    if "reservation" not in kw:
        kw.setdefault("model", fab.model)
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


def test_distances_are_to_the_current_leader_not_a_replaced_one(fleet, fab):
    """A leader that was replaced keeps its (ended) membership row: distances are measured to
    the one that leads now, and the ended member has none."""
    unit = place(fleet, fab, size=2)
    old = unit.members.get(role="leader")
    old.state = "replaced"
    old.save(update_fields=["state"])
    follower = unit.members.get(role="follower")
    follower.role = "leader"
    follower.save(update_fields=["role"])
    distances = services.member_distances(unit)
    assert distances == {follower.pk: 0}


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


def test_a_unit_is_of_one_model_required_from_free_capacity_theirs_inside(fleet, fab):
    with pytest.raises(Invalid) as required:
        place(fleet, fab, size=2, model=None)
    assert (required.value.code, required.value.errors[0].field) == ("required", "model")
    other = UltraServerModel.objects.exclude(pk=fab.model.pk).first()
    assert other is not None
    # No server of the other model at the site: too few usable, nothing written.
    with pytest.raises(Conflict) as none_of_it:
        place(fleet, fab, size=1, model=other)
    assert none_of_it.value.errors[0].field == "size"
    unit = place(fleet, fab, "free", size=2, auto_replace=True)
    assert (unit.model_id, unit.auto_replace) == (fab.model.pk, True)

    block = services.reserve(
        fleet.alpha, fab.site, fab.model, 3, hours(0), hours(4), "same_node", None, CTX
    )
    inside = place(fleet, fab, "inside", size=2, reservation=block)  # the reservation's model
    assert (inside.model_id, inside.auto_replace) == (fab.model.pk, False)
    with pytest.raises(Invalid) as mismatch:
        place(fleet, fab, "odd", size=1, reservation=block, model=other)
    assert (mismatch.value.code, mismatch.value.errors[0].field) == ("model_mismatch", "model")
    assert not WorkloadUnit.objects.filter(name="odd").exists()


def _racing(monkeypatch, before_insert):
    """``candidates_for`` as it is, then ``before_insert()`` committed in between, as a
    concurrent transaction would between the read and the insert."""
    real = services.candidates_for

    def read_then_race(*args, **kwargs):
        out = real(*args, **kwargs)
        before_insert()
        return out

    monkeypatch.setattr(services, "candidates_for", read_then_race)


def test_a_server_taken_meanwhile_is_a_409_and_writes_nothing(fleet, fab, monkeypatch):
    thief = WorkloadUnit.objects.create(
        tenant=fleet.alpha, site=fab.site, name="thief", size=1, model=fab.model
    )

    def take_every_server():  # as a concurrent replacement accept would, without the lock
        UnitMember.objects.bulk_create(
            UnitMember(unit=thief, ultraserver=server, role="follower")
            for server in fab.servers.values()
        )

    _racing(monkeypatch, take_every_server)
    audits = AuditEvent.objects.count()
    with pytest.raises(Conflict) as refused:
        place(fleet, fab, "late", size=2)
    assert (refused.value.code, refused.value.errors[0].field) == ("member_taken", "size")
    assert not WorkloadUnit.objects.filter(name="late").exists()
    assert AuditEvent.objects.count() == audits


def test_a_name_taken_meanwhile_at_another_site_is_a_409(fleet, fab, monkeypatch):
    other = build_fab(fleet.alpha, "FAB2", {"L1": 1})

    def name_it_elsewhere():  # the name check ran under this site's lock only
        WorkloadUnit.objects.create(
            tenant=fleet.alpha, site=other.site, name="twin", size=1, model=other.model
        )

    _racing(monkeypatch, name_it_elsewhere)
    # The model's own constraint check ran before the other insert committed (so it passed):
    # only the database's unique index sees the twin.
    monkeypatch.setattr(WorkloadUnit, "validate_constraints", lambda self, exclude=None: None)
    with pytest.raises(Conflict) as refused:
        place(fleet, fab, "twin", size=2)
    assert (refused.value.code, refused.value.errors[0].field) == ("unit_name_taken", "name")
    assert not UnitMember.objects.exists()


def test_a_solver_breaking_its_contract_is_an_explicit_error(fleet, fab, monkeypatch):
    real = services.solve

    def cheat(candidates, request):
        placement = real(candidates, request)
        sick = next(c for c in candidates if c.problems)
        return dataclasses.replace(placement, members=(*placement.members[:-1], sick.id))

    UltraServer.objects.filter(serial="FAB1-L3-1").update(in_maintenance=True)
    monkeypatch.setattr(services, "solve", cheat)
    with pytest.raises(services.SolverContractError):
        place(fleet, fab, size=2)
    assert not WorkloadUnit.objects.exists()


def test_a_unit_inside_a_reservation_keeps_servers_booked_after_it(fleet, fab):
    block = services.reserve(
        fleet.alpha, fab.site, fab.model, 3, hours(0), hours(4), "same_node", None, CTX
    )
    held = set(block.holds.values_list("ultraserver_id", flat=True))
    # A later reservation back to back on the very same servers (nothing else overlaps it).
    UltraServer.objects.exclude(pk__in=held).update(in_maintenance=True)
    later = services.reserve(
        fleet.alpha, fab.site, fab.model, 3, hours(4), hours(8), "same_node", None, CTX
    )
    assert set(later.holds.values_list("ultraserver_id", flat=True)) == held
    UltraServer.objects.update(in_maintenance=False)
    inside = place(fleet, fab, "inside", size=3, reservation=block)
    assert set(inside.members.values_list("ultraserver_id", flat=True)) == held
