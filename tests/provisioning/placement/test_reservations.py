"""Capacity reservations as services: candidates (and why each server is excluded), choosing
servers under a topology constraint, overlap, refusals that write nothing, and the scheduled
job that starts, expires, repairs and fails them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from factory.inventory.models import Chip, PowerFeed, UltraServer
from provisioning.models import Workflow, WorkflowTarget
from provisioning.placement import jobs, services
from provisioning.placement.models import CapacityReservation, ReservedServer, WorkloadUnit
from provisioning.placement.selectors import candidates_for
from provisioning.placement.solver import Candidate
from tenants.errors import Conflict, Invalid
from tenants.models import AuditEvent
from tests.provisioning.placement.reservation_support import CTX, Fab, build_fab, hours

pytestmark = pytest.mark.django_db


@pytest.fixture
def fab(fleet) -> Fab:
    return build_fab(fleet.alpha)


def reserve(fleet, fab, count, *, start=None, end=None, constraint="same_node", max_hops=None):
    start = start or timezone.now()
    return services.reserve(
        fleet.alpha,
        fab.site,
        fab.model,
        count,
        start,
        end or start + dt.timedelta(hours=4),
        constraint,
        max_hops,
        CTX,
        name="block",
    )


def by_serial(candidates: list[Candidate]) -> dict[str, Candidate]:
    return {c.serial: c for c in candidates}


def held_serials(reservation: CapacityReservation) -> set[str]:
    return set(reservation.holds.values_list("ultraserver__serial", flat=True))


# --- candidates -----------------------------------------------------------------------------


def test_candidates_carry_paths_top_first_racks_and_feeds(fleet, fab):
    found = by_serial(candidates_for(fab.site, tenant_id=fleet.alpha.pk))
    assert set(found) == set(fab.leaf_of)
    first = found["FAB1-L1-1"]
    # Keyed by the ids instance-topology/ gives the tenant: the explanations it reads hold them.
    from provisioning.placement.exports import node_id
    from provisioning.placement.topology import id_secret

    def key(name):
        return node_id(id_secret(), fleet.alpha.pk, fab.nodes[name].pk)

    assert first.path == (key("S1"), key("L1"))
    assert found["FAB1-L3-1"].path == (key("S2"), key("L3"))
    pks = {str(n.pk) for n in fab.nodes.values()}
    assert not any(pks & set(c.path) for c in found.values())
    assert first.rack == "FAB1-R01"
    assert first.feeds == ("FAB1-R01-A", "FAB1-R01-B")
    assert all(not c.problems for c in found.values())
    # Another tenant's servers, or another model's, are not candidates at all.
    assert candidates_for(fab.site, tenant_id=fleet.beta.pk) == []
    assert candidates_for(fab.site, tenant_id=fleet.alpha.pk, model_id=fab.model.pk + 999) == []


def test_every_reason_a_server_may_not_be_used_is_named(fleet, fab):
    s = fab.servers
    UltraServer.objects.filter(pk=s["L1-1"].pk).update(in_maintenance=True, fault_reason="leak")
    UltraServer.objects.filter(pk=s["L1-2"].pk).update(lifecycle_state="draining")
    Chip.objects.filter(ultraserver=s["L1-3"], index__in=[0, 1]).update(health="failed")
    UltraServer.objects.filter(pk=s["L2-1"].pk).update(network_node=None)
    UltraServer.objects.filter(pk=s["L2-2"].pk).update(
        isolated_since=timezone.now(), isolation_reason="coolant"
    )
    UltraServer.objects.filter(pk=s["L2-3"].pk).update(unreachable_since=timezone.now())
    workflow = Workflow.objects.create(kind="maintain", site=fab.site, state="running")
    WorkflowTarget.objects.create(workflow=workflow, ultraserver=s["L3-1"])
    # The rack of L3-2 loses most of its B path: its committed peak no longer fits on B alone.
    PowerFeed.objects.filter(rack=s["L3-2"].rack, path="B").update(amperage=50)

    found = by_serial(candidates_for(fab.site, tenant_id=fleet.alpha.pk))
    problems = {serial: " | ".join(c.problems) for serial, c in found.items()}
    assert "in maintenance: leak" in problems["FAB1-L1-1"]
    assert "not in service (draining)" in problems["FAB1-L1-2"]
    assert "unhealthy: 2 chips failed" in problems["FAB1-L1-3"]
    assert "not in the fabric" in problems["FAB1-L2-1"]
    assert found["FAB1-L2-1"].path == ()
    assert "isolated: coolant" in problems["FAB1-L2-2"]
    assert "unreachable since" in problems["FAB1-L2-3"]
    assert f"held by workflow #{workflow.pk}" in problems["FAB1-L3-1"]
    assert "feed B (FAB1-R08-B)" in problems["FAB1-L3-2"]
    assert "short of A+B headroom" in problems["FAB1-L3-2"]


def test_holds_of_units_and_overlapping_reservations(fleet, fab):
    s = fab.servers
    unit = WorkloadUnit.objects.create(tenant=fleet.alpha, site=fab.site, name="u", size=1)
    unit.members.create(ultraserver=s["L1-1"], role="leader")
    later = CapacityReservation.objects.create(
        tenant=fleet.alpha,
        site=fab.site,
        model=fab.model,
        count=1,
        starts_at=hours(10),
        ends_at=hours(12),
        state="scheduled",
    )
    ReservedServer.objects.create(
        reservation=later, ultraserver=s["L1-2"], starts_at=hours(10), ends_at=hours(12)
    )

    now = by_serial(candidates_for(fab.site, tenant_id=fleet.alpha.pk))
    assert now["FAB1-L1-1"].problems == (f"member of unit u (#{unit.pk})",)
    assert now["FAB1-L1-2"].problems == (f"held by reservation cr-{later.pk}",)  # open-ended
    before = by_serial(
        candidates_for(fab.site, tenant_id=fleet.alpha.pk, at=hours(1), until=hours(9))
    )
    assert before["FAB1-L1-2"].problems == ()  # the hold starts after that range
    mine = by_serial(candidates_for(fab.site, tenant_id=fleet.alpha.pk, exclude_unit_id=unit.pk))
    assert mine["FAB1-L1-1"].problems == ()

    inside = by_serial(
        candidates_for(fab.site, tenant_id=fleet.alpha.pk, reservation=later, at=hours(10))
    )
    assert inside["FAB1-L1-2"].problems == ()
    assert inside["FAB1-L2-1"].problems == (f"outside reservation cr-{later.pk}",)


@pytest.mark.parametrize("extra", [0, 45])
def test_candidates_take_a_fixed_number_of_queries(fleet, fab, extra):
    """The same count for 8 servers as for 53 (5 + 50 would do as well; the point is: flat)."""
    rack = fab.servers["L1-1"].rack
    UltraServer.objects.bulk_create(
        UltraServer(
            serial=f"BULK-{i}",
            model=fab.model,
            rack=rack,
            position=1,
            tenant=fleet.alpha,
            lifecycle_state="in-service",
            network_node=fab.nodes["L2"],
        )
        for i in range(extra)
    )
    reservation = CapacityReservation.objects.create(
        tenant=fleet.alpha,
        site=fab.site,
        model=fab.model,
        count=1,
        starts_at=hours(-1),
        ends_at=hours(1),
        state="active",
    )
    with CaptureQueriesContext(connection) as plain:
        found = candidates_for(fab.site, tenant_id=fleet.alpha.pk)
    with CaptureQueriesContext(connection) as scoped:
        candidates_for(fab.site, tenant_id=fleet.alpha.pk, reservation=reservation)
    assert len(found) == 8 + extra
    assert len(plain) == 7
    assert len(scoped) == 8


# --- reserving ------------------------------------------------------------------------------


def test_a_reservation_holds_servers_under_one_leaf_and_is_audited(fleet, fab):
    now_block = reserve(fleet, fab, 3)
    assert now_block.state == "active"
    held = held_serials(now_block)
    assert held in (fab.under("L1"), fab.under("L2"))
    assert now_block.explanation["members"] and set(now_block.explanation["members"]) == held
    assert AuditEvent.objects.filter(
        object_type="placement.capacityreservation", object_id=str(now_block.pk)
    ).exists()
    assert (
        AuditEvent.objects.filter(object_type="placement.reservedserver", action="create").count()
        == 3
    )

    future = reserve(fleet, fab, 2, start=hours(2))
    assert future.state == "scheduled"
    assert not held & held_serials(future)  # overlapping: it got others


def test_overlapping_reservations_get_other_servers_or_are_refused(fleet, fab):
    first = reserve(fleet, fab, 3, start=hours(1))
    second = reserve(fleet, fab, 3, start=hours(2))  # overlaps the first
    assert not held_serials(first) & held_serials(second)
    before = (CapacityReservation.objects.count(), ReservedServer.objects.count())
    with pytest.raises(Conflict) as refused:
        reserve(fleet, fab, 3, start=hours(3))  # only L3's two are left
    assert refused.value.errors[0].field == "count"
    assert refused.value.code == "count"
    assert (CapacityReservation.objects.count(), ReservedServer.objects.count()) == before
    # After both end, the same servers can be reserved again.
    again = reserve(fleet, fab, 3, start=hours(6))
    assert held_serials(again) in (held_serials(first), held_serials(second))


def test_a_constraint_that_cannot_be_met_is_a_409_naming_it(fleet, fab):
    with pytest.raises(Conflict) as refused:
        reserve(fleet, fab, 4)  # 8 usable, but no leaf has 4
    assert refused.value.code == "same_node"
    assert refused.value.errors[0].field == "constraint"
    assert not CapacityReservation.objects.exists()
    spread = reserve(fleet, fab, 5, constraint="max_hops", max_hops=4)  # S1's six are 2-4 apart
    assert held_serials(spread) <= fab.under("L1") | fab.under("L2")


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"count": 0}, "count", "out_of_range"),
        ({"end": hours(-3), "start": hours(-1)}, "ends_at", "ends_before_start"),
        ({"start": hours(-5), "end": hours(-1)}, "ends_at", "in_the_past"),
        ({"max_hops": 4}, "max_hops", "max_hops_without_constraint"),
        ({"constraint": "max_hops"}, "max_hops", "required"),
        ({"constraint": "nearby"}, "constraint", "invalid_choice"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(fleet, fab, changes, field, code):
    args = {"count": 2, "start": None, "end": None, "constraint": "same_node", "max_hops": None}
    args.update(changes)
    count = args.pop("count")
    with pytest.raises(Invalid) as refused:
        reserve(fleet, fab, count, **args)
    assert (refused.value.errors[0].field, refused.value.code) == (field, code)
    assert not CapacityReservation.objects.exists()


def test_a_reservation_is_on_the_tenants_own_site_only(fleet, fab):
    with pytest.raises(Invalid) as refused:
        services.reserve(fleet.beta, fab.site, fab.model, 1, hours(1), hours(2), "none", None, CTX)
    assert refused.value.errors[0].field == "site"


def test_cancelling_frees_the_servers_and_refuses_twice(fleet, fab):
    block = reserve(fleet, fab, 3)
    cancelled = services.cancel_reservation(block, CTX, reason="not needed")
    assert cancelled.state == "cancelled" and cancelled.state_reason == "not needed"
    assert not ReservedServer.objects.exists()
    with pytest.raises(Conflict) as refused:
        services.cancel_reservation(block, CTX)
    assert refused.value.code == "reservation_not_cancellable"


def test_a_reservation_with_a_running_unit_cannot_be_cancelled(fleet, fab):
    block = reserve(fleet, fab, 3)
    services.place_unit(
        fleet.alpha, fab.site, "inside", 2, "same_node", None, "none", [], CTX, reservation=block
    )
    with pytest.raises(Conflict) as refused:
        services.cancel_reservation(block, CTX)
    assert refused.value.code == "reservation_in_use"
    assert CapacityReservation.objects.get(pk=block.pk).state == "active"


# --- the scheduled job ----------------------------------------------------------------------


def test_the_job_starts_and_expires_reservations_and_releases_their_units(fleet, fab):
    soon = reserve(fleet, fab, 2, start=hours(1), end=hours(3))
    running = reserve(fleet, fab, 3, start=timezone.now(), end=hours(2))
    unit = services.place_unit(
        fleet.alpha, fab.site, "inside", 2, "same_node", None, "none", [], CTX, reservation=running
    )
    summary = services.advance_reservations(CTX, now=hours(1.5))
    assert summary == {"activated": 1, "expired": 0, "swapped": 0, "failed": 0}
    assert CapacityReservation.objects.get(pk=soon.pk).state == "active"

    summary = services.advance_reservations(CTX, now=hours(2.5))
    assert summary["expired"] == 1
    expired = CapacityReservation.objects.get(pk=running.pk)
    assert expired.state == "expired" and not expired.holds.exists()
    unit.refresh_from_db()
    assert unit.state == "released"
    assert set(unit.members.values_list("state", flat=True)) == {"released"}
    # Idempotent: the same moment again changes nothing.
    assert services.advance_reservations(CTX, now=hours(2.5)) == {
        "activated": 0,
        "expired": 0,
        "swapped": 0,
        "failed": 0,
    }


def test_a_server_lost_before_the_start_is_swapped_under_the_same_constraint(fleet, fab):
    block = reserve(fleet, fab, 2, start=hours(5))
    held = held_serials(block)
    leaf = fab.leaf_of[next(iter(held))]
    lost = UltraServer.objects.get(serial=sorted(held)[0])
    UltraServer.objects.filter(pk=lost.pk).update(in_maintenance=True, fault_reason="fan")

    summary = services.advance_reservations(CTX)
    assert summary["swapped"] == 1
    block.refresh_from_db()
    now_held = held_serials(block)
    assert len(now_held) == 2 and lost.serial not in now_held
    assert len({fab.leaf_of[s] for s in now_held}) == 1  # still under one leaf
    swap = block.explanation["swaps"][-1]
    assert swap["out"] and lost.serial in swap["why"] and "fan" in swap["why"][lost.serial]
    assert block.state == "scheduled"
    assert leaf  # (the leaf it was under may or may not be the one it is under now)


def test_a_reservation_that_cannot_be_honoured_fails_with_the_reason(fleet, fab):
    block = reserve(fleet, fab, 3, start=hours(5))
    held = sorted(held_serials(block))
    others = [s for s in fab.leaf_of if s not in held]
    # Every other leaf is down to fewer than three usable servers: no replacement exists.
    UltraServer.objects.filter(serial__in=[held[0], *others[:2]]).update(in_maintenance=True)
    result = jobs.advance_reservations()
    assert result["failed"] == 1
    block.refresh_from_db()
    assert block.state == "failed"
    assert held[0] in block.state_reason and "same_node" in block.state_reason
    assert not block.holds.exists()
    assert services.advance_reservations(CTX)["failed"] == 0  # once only


def test_the_job_takes_a_fixed_number_of_queries(fleet, fab):
    """Starting and expiring: the same queries for one reservation as for four."""

    def run(blocks: int, start: float) -> tuple[int, int]:
        for _ in range(blocks):
            reserve(fleet, fab, 1, constraint="none", start=hours(start), end=hours(start + 1))
        with CaptureQueriesContext(connection) as starting:
            assert services.advance_reservations(CTX, now=hours(start + 0.5))["activated"] == (
                blocks
            )
        with CaptureQueriesContext(connection) as ending:
            assert services.advance_reservations(CTX, now=hours(start + 1.5))["expired"] == (blocks)
        return len(starting), len(ending)

    assert run(1, 1) == run(4, 3)


# --- the job's last check, locks held elsewhere, a reservation gone meanwhile ------------------


def test_a_reservation_whose_unit_is_locked_elsewhere_waits_for_the_next_run(
    fleet, fab, monkeypatch
):
    block = reserve(fleet, fab, 2, start=timezone.now(), end=hours(2))
    unit = services.place_unit(
        fleet.alpha, fab.site, "busy", 2, "same_node", None, "none", [], CTX, reservation=block
    )
    manager = WorkloadUnit.objects
    real = manager.select_for_update

    def held_elsewhere(*args, **kwargs):  # a concurrent release or replacement holds the row
        queryset = real(*args, **kwargs)
        return queryset.exclude(pk=unit.pk) if kwargs.get("skip_locked") else queryset

    monkeypatch.setattr(manager, "select_for_update", held_elsewhere)
    assert services.advance_reservations(CTX, now=hours(3))["expired"] == 0
    block.refresh_from_db()
    unit.refresh_from_db()
    assert block.state == "active" and block.holds.count() == 2
    assert unit.state == "active"

    monkeypatch.undo()  # the other transaction is done: the next run expires it, unit and all
    assert services.advance_reservations(CTX, now=hours(3))["expired"] == 1
    block.refresh_from_db()
    unit.refresh_from_db()
    assert (block.state, unit.state) == ("expired", "released")


def test_a_server_lost_by_the_start_is_swapped_before_activating(fleet, fab):
    block = reserve(fleet, fab, 2, start=hours(1), end=hours(3))
    lost = sorted(held_serials(block))[0]
    UltraServer.objects.filter(serial=lost).update(in_maintenance=True)
    summary = services.advance_reservations(CTX, now=hours(1.5))
    assert summary == {"activated": 1, "expired": 0, "swapped": 1, "failed": 0}
    block.refresh_from_db()
    assert block.state == "active"
    now_held = held_serials(block)
    assert len(now_held) == 2 and lost not in now_held
    assert len({fab.leaf_of[s] for s in now_held}) == 1


def test_a_reservation_without_a_replacement_at_its_start_starts_short(fleet, fab):
    block = reserve(fleet, fab, 3, start=hours(1), end=hours(3))
    held = sorted(held_serials(block))
    others = [s for s in fab.leaf_of if s not in held]
    UltraServer.objects.filter(serial__in=[held[0], *others[:2]]).update(in_maintenance=True)
    summary = services.advance_reservations(CTX, now=hours(1.5))
    assert summary == {"activated": 1, "expired": 0, "swapped": 0, "failed": 0}
    block.refresh_from_db()
    assert block.state == "active"
    assert block.state_reason.startswith("started short: 2 of 3")
    assert held[0] in block.state_reason
    assert held_serials(block) == set(held)  # kept: the lost one may come back
    assert services.advance_reservations(CTX, now=hours(1.5))["activated"] == 0  # once only


def test_a_reservation_cancelled_meanwhile_is_not_counted_as_swapped(fleet, fab):
    block = reserve(fleet, fab, 2, start=hours(5))
    lost = UltraServer.objects.get(serial=sorted(held_serials(block))[0])
    UltraServer.objects.filter(pk=lost.pk).update(in_maintenance=True)
    services.cancel_reservation(block, CTX)
    assert services._reselect(block, [lost.pk], CTX) is services.Reselected.SKIPPED
    block.refresh_from_db()
    assert block.state == "cancelled" and not block.holds.exists()


def test_the_recorded_job_retries_accepted_replacements_too(fleet, fab):
    from provisioning.models import JobRun

    summary = jobs.advance_reservations()
    assert summary["replacements_done"] == 0  # none accepted and waiting
    run = JobRun.objects.get(job=jobs.JOB_NAME)
    assert run.outcome == "ok" and run.summary == summary
