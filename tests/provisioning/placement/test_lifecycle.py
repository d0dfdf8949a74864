"""Workload units in the lifecycle, against real PostgreSQL: a rollout takes whole units, one
unit of a tenant down at a time; a failed member degrades its unit and a replacement under the
unit's network node is proposed; accepting it through the API swaps it in."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest
from django.db import connection, transaction

from factory.inventory import lifecycle as states
from factory.inventory.models import NetworkNode, Site, UltraServer
from factory.inventory.models.locking import lock_capacity_scope
from factory.telemetry import faults
from factory.telemetry.rules import Finding
from factory.wire import FaultRule
from provisioning import rollout, services
from provisioning.choices import FINISHED_WORKFLOW_STATES
from provisioning.models import Workflow, WorkflowTarget
from provisioning.placement import lifecycle
from provisioning.placement.models import UnitMember, UnitReplacement, WorkloadUnit
from tests.support.api import assert_error_body
from tests.support.fleet import CTX, make_rack, make_server, make_site
from tests.support.harness import answer_commands, expire_lost_commands, run_due_steps
from tests.support.workflows import always_open, put_in_service

pytestmark = pytest.mark.django_db

FAST = {"firmware_version": "2.0", "soak_seconds": 0, "poll_seconds": 1, "batch_size": 4}


@dataclass
class Units:
    site: Site
    leaves: list[NetworkNode]
    units: list[WorkloadUnit]
    members: list[list[UltraServer]]  # [unit][member]; member 0 leads
    spares: dict[str, UltraServer] = field(default_factory=dict)

    @property
    def all_members(self) -> list[UltraServer]:
        return [s for unit in self.members for s in unit]


def _server(site, name, leaf, number):
    """One Trn3 (it fills a 42U rack) in a rack of its own, in service, under ``leaf``."""
    rack = make_rack(site, f"{site.code}-R{number:02d}")
    server = put_in_service(make_server(f"{site.code}-{name}", rack=rack))
    UltraServer.objects.filter(pk=server.pk).update(network_node=leaf)
    return UltraServer.objects.get(pk=server.pk)


@pytest.fixture
def units(fleet, releases):
    """Alpha's site: a spine over four leaves; four units of four, unit ``u`` under leaf ``u``.
    The servers are made member by member across the units (u0m0, u1m0, u2m0, u3m0, u0m1, …),
    so a rollout that counts only servers would take one member of every unit per batch. A
    spare in no unit under leaf 1 and one under leaf 2."""
    site = fleet.sites["alpha"]
    Site.objects.filter(pk=site.pk).update(
        contracted_power_kw=100_000, contracted_cooling_kw=100_000
    )
    site.refresh_from_db()
    spine = NetworkNode.objects.create(site=site, name=f"{site.code}-SPINE-1", layer=1)
    leaves = [
        NetworkNode.objects.create(site=site, name=f"{site.code}-LEAF-{u}", layer=2, parent=spine)
        for u in range(4)
    ]
    members: list[list[UltraServer]] = [[] for _ in range(4)]
    number = 2
    for j in range(4):
        for u in range(4):
            members[u].append(_server(site, f"U{u}M{j}", leaves[u], number))
            number += 1
    made = []
    for u in range(4):
        unit = WorkloadUnit.objects.create(
            tenant=site.tenant,
            site=site,
            name=f"unit-{u}",
            size=4,
            # unit 3 lets two of its members go at a time; the others go whole
            max_unavailable=2 if u == 3 else 0,
        )
        for j, server in enumerate(members[u]):
            UnitMember.objects.create(
                unit=unit, ultraserver=server, role="leader" if j == 0 else "follower"
            )
        made.append(unit)
    fleet_units = Units(site, leaves, made, members)
    fleet_units.spares["leaf1"] = _server(site, "SPARE-L1", leaves[1], number)
    fleet_units.spares["leaf2"] = _server(site, "SPARE-L2", leaves[2], number + 1)
    always_open(site)
    return fleet_units


def units_out(servers) -> set[int]:
    """Units with a member out of service right now."""
    return set(
        UnitMember.objects.filter(ultraserver__in=servers, state__in=["active", "failed"])
        .exclude(ultraserver__lifecycle_state=states.IN_SERVICE)
        .values_list("unit_id", flat=True)
    )


def drive_recording(workflow, agent, hw, servers, rounds=200):
    """The harness's drive loop, recording per batch the units it held and the units out."""
    held: dict[int, set[int]] = {}
    out_at_once = 0
    for _ in range(rounds):
        answer_commands(agent, hw)
        out_at_once = max(out_at_once, len(units_out(servers)))
        run_due_steps(workflow.pk)
        out_at_once = max(out_at_once, len(units_out(servers)))
        answer_commands(agent, hw)
        expire_lost_commands()
        rollout.advance(workflow.pk)
        workflow.refresh_from_db()
        running = WorkflowTarget.objects.filter(workflow=workflow, state="running")
        batch_units = set(
            UnitMember.objects.filter(
                ultraserver_id__in=running.values("ultraserver_id")
            ).values_list("unit_id", flat=True)
        )
        held.setdefault(workflow.current_batch, set()).update(batch_units)
        out_at_once = max(out_at_once, len(units_out(servers)))
        if workflow.state in FINISHED_WORKFLOW_STATES or workflow.state == "paused":
            break
    return workflow, held, out_at_once


@pytest.mark.slow  # 17 servers driven through every step (about a minute)
def test_an_upgrade_takes_whole_units_one_at_a_time_and_finishes(units, agent, hw):
    # targets in creation order: u0m0, u1m0, u2m0, u3m0, u0m1, … (one of every unit first)
    servers = [*sorted(units.all_members, key=lambda s: s.pk), units.spares["leaf1"]]
    workflow, _ = services.create_workflow("upgrade", servers, CTX, spec=FAST)
    assert workflow.spec["max_unavailable_units"] == 1  # the declared default, stored
    workflow, held, out_at_once = drive_recording(workflow, agent, hw, servers)
    assert workflow.state == "succeeded", workflow.state_reason
    ids = [u.pk for u in units.units]
    # per batch: the units it held (the canary's unit came whole)
    assert [held[b] for b in sorted(held)] == [{ids[0]}, {ids[1]}, {ids[2]}, {ids[3]}, {ids[3]}]
    assert out_at_once == 1  # never more than one unit out of service at a time
    sizes = {}
    for batch, server_id in workflow.targets.values_list("batch", "ultraserver_id"):
        sizes.setdefault(batch, set()).add(server_id)
    # a whole unit may exceed the canary's size (1); unit 3 (max_unavailable 2) in two halves,
    # the spare (in no unit) filling the first half's batch up to batch_size
    assert {b: len(s) for b, s in sizes.items()} == {0: 4, 1: 4, 2: 4, 3: 3, 4: 2}
    assert units.spares["leaf1"].pk in sizes[3]
    for batch, members in enumerate(units.members[:3]):
        assert sizes[batch] == {s.pk for s in members}
    assert (
        UltraServer.objects.filter(pk__in=[s.pk for s in servers], firmware_version="2.0").count()
        == 17
    )


def test_the_unit_budget_counts_units_down_in_other_workflows(units):
    """Unit 2's leader is in a maintain workflow: with one unit down already, the upgrade
    starts nothing, and says why; members of the unit already down may still go."""
    maintain, _ = services.create_workflow("maintain", [units.members[2][0]], CTX)
    rollout.advance(maintain.pk)
    assert maintain.targets.get().state == "running"
    others = [s for u in (0, 1) for s in units.members[u]]
    upgrade, _ = services.create_workflow("upgrade", others, CTX, spec=FAST)
    assert rollout.advance(upgrade.pk) == "nothing-to-start"
    upgrade.refresh_from_db()
    assert "max_unavailable_units" in upgrade.state_reason and "unit-0" in upgrade.state_reason
    # it names the unit down and why
    held = f"down: unit unit-2: member {units.members[2][0].serial} held by maintain workflow"
    assert f"{held} #{maintain.pk}" in upgrade.state_reason
    assert not upgrade.targets.filter(state="running").exists()
    # unit 2's other members: that unit is down already, so they may go now
    rest, _ = services.create_workflow("upgrade", units.members[2][1:], CTX, spec=FAST)
    assert rollout.advance(rest.pk) == "started"
    assert rest.targets.filter(state="running").count() == 3  # the whole rest of unit 2


def test_a_faulty_members_maintenance_is_not_held_back_by_the_unit_budget(
    units, django_capture_on_commit_callbacks
):
    """Unit 0 is upgrading (one unit down); a fault on a member of unit 1: that server is out
    already, so its maintain workflow starts at once."""
    upgrade, _ = services.create_workflow("upgrade", units.members[0], CTX, spec=FAST)
    assert rollout.advance(upgrade.pk) == "started"
    failed = units.members[1][1]
    chip_fault(failed, django_capture_on_commit_callbacks)
    maintain = Workflow.objects.get(kind="maintain", targets__ultraserver=failed)
    assert rollout.advance(maintain.pk) == "started"
    assert maintain.targets.get().state == "running"


def test_without_a_unit_budget_one_batch_takes_a_member_of_every_unit(units):
    """What the budget prevents: max_unavailable_units 0 (no limit), no canary, batch of 4."""
    spec = {**FAST, "max_unavailable_units": 0, "canary_size": 0, "max_unavailable_per_domain": 0}
    members = sorted((s for u in (0, 1, 2) for s in units.members[u]), key=lambda s: s.pk)
    workflow, _ = services.create_workflow("upgrade", members, CTX, spec=spec)
    rollout.advance(workflow.pk)
    running = workflow.targets.filter(state="running").values("ultraserver_id")
    taken = UnitMember.objects.filter(ultraserver_id__in=running)
    assert taken.values("unit").distinct().count() == 3
    assert taken.count() == 12  # each started unit whole, beyond batch_size (4)


def chip_fault(server, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        faults.raise_findings(
            server.rack.site_id, [(server.pk, Finding(FaultRule.CHIP_DOWN, "chip 3 down", 3))], []
        )


def test_a_chip_fault_degrades_the_unit_and_proposes_a_server_under_its_node(
    units, django_capture_on_commit_callbacks
):
    failed = units.members[1][2]
    chip_fault(failed, django_capture_on_commit_callbacks)
    unit = WorkloadUnit.objects.get(pk=units.units[1].pk)
    assert unit.state == "degraded" and failed.serial in unit.state_reason
    member = UnitMember.objects.get(unit=unit, ultraserver=failed)
    assert member.state == "failed" and "chip 3 down" in member.state_reason
    proposal = UnitReplacement.objects.get(unit=unit)
    assert proposal.state == "proposed" and proposal.failed_member == member
    # the spare under the unit's leaf, not the one under another leaf
    assert proposal.replacement == units.spares["leaf1"]
    assert proposal.replacement.network_node == units.leaves[1]
    assert proposal.explanation["same_node"] is True
    from provisioning.placement.exports import node_id
    from provisioning.placement.topology import id_secret

    # the tenant's hashed id of the leaf (as instance-topology/ gives it), never its pk
    assert proposal.explanation["unit_node"] == node_id(
        id_secret(), unit.tenant_id, units.leaves[1].pk
    )
    assert proposal.explanation["solver"]  # the solver's account, stored
    # the fault opened a maintain workflow for the failed server, as before
    assert WorkflowTarget.objects.filter(ultraserver=failed, active=True).exists()
    # a second fault on the same member proposes nothing new
    assert lifecycle.member_failed(failed.pk, "again") == proposal
    assert UnitReplacement.objects.filter(unit=unit).count() == 1
    # other units are untouched
    assert set(WorkloadUnit.objects.exclude(pk=unit.pk).values_list("state", flat=True)) == {
        "active"
    }
    # accepted while the fault's maintain workflow holds the failed server: that one is kept
    holder = WorkflowTarget.objects.get(ultraserver=failed, active=True).workflow_id
    done = lifecycle.accept(proposal, CTX)
    assert (done.state, done.workflow_id) == ("done", holder)
    assert Workflow.objects.filter(kind="maintain", targets__ultraserver=failed).count() == 1


def test_without_a_healthy_server_the_proposal_is_rejected_and_says_why(
    units, django_capture_on_commit_callbacks
):
    UltraServer.objects.filter(pk__in=[s.pk for s in units.spares.values()]).update(
        in_maintenance=True
    )
    chip_fault(units.members[0][1], django_capture_on_commit_callbacks)
    proposal = UnitReplacement.objects.get(unit=units.units[0])
    assert proposal.state == "rejected" and proposal.replacement is None
    assert proposal.explanation["rejected_by"] == "solver" and proposal.explanation["reasons"]
    assert WorkloadUnit.objects.get(pk=units.units[0].pk).state == "degraded"
    # the fault's maintain workflow holds the failed member: a rollout of another unit waits,
    # and its reason says what the operator can act on
    upgrade, _ = services.create_workflow("upgrade", units.members[1], CTX, spec=FAST)
    assert rollout.advance(upgrade.pk) == "nothing-to-start"
    upgrade.refresh_from_db()
    failed = units.members[0][1].serial
    assert f"unit unit-0: member {failed} failed (fault: chip 3 down)" in upgrade.state_reason
    assert f"replacement #{proposal.pk} rejected: " in upgrade.state_reason


def test_a_failed_upgrade_target_fails_its_member(units, agent, hw):
    server = units.members[3][1]
    hw.flash_failures[server.serial] = 99
    spec = {**FAST, "rollback": False, "canary_size": 0, "max_failures": 5}
    workflow, _ = services.create_workflow("upgrade", units.members[3], CTX, spec=spec)
    workflow, _, _ = drive_recording(workflow, agent, hw, units.members[3])
    assert workflow.targets.get(ultraserver=server).state == "failed"
    assert UnitMember.objects.get(ultraserver=server, unit=units.units[3]).state == "failed"
    assert WorkloadUnit.objects.get(pk=units.units[3].pk).state == "degraded"
    assert UnitReplacement.objects.get(unit=units.units[3]).state == "proposed"


def url(unit, suffix=""):
    return f"/api/v1/units/{unit.pk}/replacements/{suffix}"


def test_accepting_through_the_api_swaps_the_member_and_opens_maintenance(
    fleet, units, django_capture_on_commit_callbacks
):
    leader = units.members[1][0]
    # the maintain workflow the fault would open is not there (e.g. refused): accept opens one
    with django_capture_on_commit_callbacks(execute=True):
        faults.raise_findings(
            leader.rack.site_id, [(leader.pk, Finding(FaultRule.ECC_UNCORRECTABLE, "ecc", 1))], []
        )
    WorkflowTarget.objects.filter(ultraserver=leader).update(active=False)
    Workflow.objects.filter(targets__ultraserver=leader).update(state="cancelled")
    unit = units.units[1]
    proposal = UnitReplacement.objects.get(unit=unit)

    listed = fleet.client("alpha_viewer").get(url(unit))
    assert listed.status_code == 200, listed.content
    [row] = listed.json()["results"]
    assert (row["id"], row["state"], row["failed_server"], row["failed_role"]) == (
        proposal.pk,
        "proposed",
        leader.serial,
        "leader",
    )
    assert row["replacement_server"] == units.spares["leaf1"].serial
    # another tenant: 404, for the list and the actions
    beta = fleet.client("beta_admin")
    assert_error_body(beta.get(url(unit)), 404)
    assert_error_body(beta.post(url(unit, f"{proposal.pk}/accept/")), 404)
    # the unit's own operator may not decide; nor may the provider (the tenant's choice)
    assert_error_body(fleet.client("alpha_operator").post(url(unit, f"{proposal.pk}/accept/")), 403)
    assert_error_body(fleet.client("provider_admin").post(url(unit, f"{proposal.pk}/accept/")), 403)
    # a proposal of another unit, under this unit's URL: 404
    assert_error_body(
        fleet.client("alpha_admin").post(url(units.units[0], f"{proposal.pk}/accept/")), 404
    )

    admin = fleet.client("alpha_admin")
    # nonsense ids: 404 with the error body, never a 500
    for path in (
        "/api/v1/units/99999999999999999999/replacements/",
        url(unit, "99999999999999999999/accept/"),
        url(unit, "abc/reject/"),
        url(unit, f"{proposal.pk + 1000}/"),
    ):
        response = (
            admin.post(path) if path.endswith("/accept/") or "reject" in path else admin.get(path)
        )
        assert response.status_code == 404, (path, response.content)
    accepted = admin.post(url(unit, f"{proposal.pk}/accept/"))
    assert accepted.status_code == 200, accepted.content
    body = accepted.json()
    assert body["state"] == "done" and body["workflow_id"]
    spare = units.spares["leaf1"]
    assert UnitMember.objects.get(ultraserver=leader, unit=unit).state == "replaced"
    joined = UnitMember.objects.get(ultraserver=spare, unit=unit)
    assert (joined.state, joined.role) == ("active", "leader")  # the leader failed
    unit.refresh_from_db()
    assert (unit.state, unit.state_reason) == ("active", "")
    maintain = Workflow.objects.get(pk=body["workflow_id"])
    assert maintain.kind == "maintain" and maintain.targets.get().ultraserver == leader
    # decided: a second accept or a reject is a 409 naming the rule
    for verb in ("accept", "reject"):
        again = assert_error_body(admin.post(url(unit, f"{proposal.pk}/{verb}/")), 409)
        assert again["code"] == "replacement_not_proposed"


def test_accepting_a_server_no_longer_usable_is_a_409_and_changes_nothing(
    fleet, units, django_capture_on_commit_callbacks
):
    chip_fault(units.members[2][3], django_capture_on_commit_callbacks)
    unit = units.units[2]
    proposal = UnitReplacement.objects.get(unit=unit)
    assert proposal.replacement == units.spares["leaf2"]
    UltraServer.objects.filter(pk=units.spares["leaf2"].pk).update(
        in_maintenance=True, fault_reason="fan"
    )
    admin = fleet.client("alpha_admin")
    refused = assert_error_body(admin.post(url(unit, f"{proposal.pk}/accept/")), 409)
    assert refused["code"] == "replacement_unusable"
    assert refused["errors"][0]["field"] == "replacement" and "maintenance" in refused["message"]
    proposal.refresh_from_db()
    assert proposal.state == "proposed"
    assert UnitMember.objects.get(ultraserver=units.members[2][3]).state == "failed"
    assert not UnitMember.objects.filter(ultraserver=units.spares["leaf2"]).exists()
    rejected = admin.post(url(unit, f"{proposal.pk}/reject/"))
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
    assert WorkloadUnit.objects.get(pk=unit.pk).state == "degraded"


# --- Review fixes: the unit budget under the site lock, per site; stranded members; auto
# replacement; accepted replacements retried ------------------------------------------------


def test_a_unit_down_at_another_site_does_not_block_a_rollout_here(fleet, units):
    """The unit budget counts the workflow's site only: a unit of the same tenant at another
    site, with its member out, leaves the upgrade here free to start."""
    tenant = units.site.tenant
    elsewhere = make_site(tenant, "ALPHA2")
    far = put_in_service(make_server("ALPHA2-S1", rack=make_rack(elsewhere, "ALPHA2-R01")))
    UltraServer.objects.filter(pk=far.pk).update(in_maintenance=True, fault_reason="fan")
    far_unit = WorkloadUnit.objects.create(tenant=tenant, site=elsewhere, name="far", size=1)
    UnitMember.objects.create(unit=far_unit, ultraserver=far, role="leader")
    assert set(lifecycle.units_down(elsewhere.pk, [tenant.pk])) == {far_unit.pk}
    assert lifecycle.units_down(units.site.pk, [tenant.pk]) == {}
    upgrade, _ = services.create_workflow("upgrade", units.members[0], CTX, spec=FAST)
    assert rollout.advance(upgrade.pk) == "started"


def test_a_failed_member_blocks_while_held_and_names_why_but_not_when_stranded(units):
    """A failed member under repair (a workflow holds it) keeps its unit down, and the waiting
    upgrade's reason names the unit, the member and its replacement; once nothing holds it
    (stranded, waiting for its replacement) it no longer blocks the other units."""
    failed = units.members[2][0]
    proposal = lifecycle.member_failed(failed.pk, "chip 5 gone")
    assert proposal is not None and proposal.state == "proposed"
    repair, _ = services.create_workflow("maintain", [failed], CTX, reason="repair")
    upgrade, _ = services.create_workflow("upgrade", units.members[0], CTX, spec=FAST)
    assert rollout.advance(upgrade.pk) == "nothing-to-start"
    upgrade.refresh_from_db()
    reason = upgrade.state_reason
    assert "down: unit unit-2: member " + failed.serial + " failed (chip 5 gone)" in reason
    assert f"replacement #{proposal.pk} proposed" in reason and "next: unit-0" in reason
    assert upgrade.events.filter(kind="waiting-units", message=reason).exists()
    # the repair is given up: the failed member is stranded, its unit no longer blocks
    WorkflowTarget.objects.filter(workflow=repair).update(active=False)
    Workflow.objects.filter(pk=repair.pk).update(state="cancelled")
    [down] = lifecycle.units_down(units.site.pk, [units.site.tenant_id]).values()
    assert (down.unit_id, down.counted, down.out) == (units.units[2].pk, False, 1)
    assert "stranded" in down.causes[0]
    assert rollout.advance(upgrade.pk) == "started"
    assert upgrade.targets.filter(state="running").count() == 4  # unit 0, whole


def test_with_auto_replace_a_failed_member_is_swapped_at_once_by_the_system(
    units, django_capture_on_commit_callbacks
):
    from tenants.models import AuditEvent

    unit = units.units[1]
    WorkloadUnit.objects.filter(pk=unit.pk).update(auto_replace=True)
    failed = units.members[1][2]
    chip_fault(failed, django_capture_on_commit_callbacks)
    replacement = UnitReplacement.objects.get(unit=unit)
    holder = WorkflowTarget.objects.get(ultraserver=failed, active=True).workflow_id
    assert (replacement.state, replacement.workflow_id) == ("done", holder)
    assert replacement.explanation["accepted_by"] == "system"
    assert UnitMember.objects.get(unit=unit, ultraserver=failed).state == "replaced"
    spare = units.spares["leaf1"]
    assert UnitMember.objects.get(unit=unit, ultraserver=spare).state == "active"
    assert WorkloadUnit.objects.get(pk=unit.pk).state == "active"
    audited = AuditEvent.objects.filter(
        object_type__icontains="unitreplacement", object_id=str(replacement.pk)
    )
    assert audited.filter(actor_username="system", after__state="done").exists()


def test_without_auto_replace_the_proposal_waits_for_the_tenant(
    units, django_capture_on_commit_callbacks
):
    chip_fault(units.members[1][2], django_capture_on_commit_callbacks)
    assert UnitReplacement.objects.get(unit=units.units[1]).state == "proposed"


def test_an_accepted_replacement_refused_by_the_floor_is_retried_until_it_opens(
    units, django_capture_on_commit_callbacks
):
    from provisioning.models import CapacityFloor

    leader = units.members[1][0]
    chip_fault(leader, django_capture_on_commit_callbacks)
    # the fault's maintain workflow is gone, and the site is at its floor
    WorkflowTarget.objects.filter(ultraserver=leader).update(active=False)
    Workflow.objects.filter(targets__ultraserver=leader).update(state="cancelled")
    serving = UltraServer.objects.filter(
        rack__site=units.site, lifecycle_state=states.IN_SERVICE
    ).count()
    floor = CapacityFloor.objects.create(site=units.site, min_in_service=serving)
    proposal = UnitReplacement.objects.get(unit=units.units[1])
    accepted = lifecycle.accept(proposal, CTX)
    assert (accepted.state, accepted.workflow_id) == ("accepted", None)
    assert "capacity floor" in accepted.explanation["maintain"]
    assert lifecycle.retry_accepted() == 0  # still refused: stays accepted, says why
    accepted.refresh_from_db()
    assert accepted.state == "accepted" and "retried_at" in accepted.explanation
    floor.delete()
    assert lifecycle.retry_accepted() == 1
    accepted.refresh_from_db()
    assert accepted.state == "done" and accepted.workflow_id
    maintain = Workflow.objects.get(pk=accepted.workflow_id)
    assert maintain.kind == "maintain" and maintain.targets.get().ultraserver == leader
    assert lifecycle.retry_accepted() == 0  # idempotent
    assert Workflow.objects.filter(kind="maintain", state__in=["running", "pending"]).count() <= 1


@pytest.mark.slow  # transactional (flushes and restores the database)
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_rollouts_at_one_site_race_for_the_unit_budget_one_wins(units):
    """Two upgrades at one site, each over a different unit, advance at once while a third
    connection holds the site's lock: both wait for it before reading the unit budget, so the
    second sees the first's unit down and starts nothing (never two units down)."""
    first, _ = services.create_workflow("upgrade", units.members[0], CTX, spec=FAST)
    second, _ = services.create_workflow("upgrade", units.members[1], CTX, spec=FAST)
    results: dict[int, str] = {}

    def advance(workflow_id: int) -> None:
        try:
            results[workflow_id] = rollout.advance(workflow_id)
        finally:
            connection.close()

    threads = [threading.Thread(target=advance, args=(w.pk,)) for w in (first, second)]
    with transaction.atomic():
        lock_capacity_scope(site_ids=[units.site.pk])
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
                if cursor.fetchone()[0] >= 2:
                    break
            time.sleep(0.05)
    for thread in threads:
        thread.join(60)
    assert sorted(results.values()) == ["nothing-to-start", "started"], results
    running = WorkflowTarget.objects.filter(state="running").values("ultraserver_id")
    assert (
        UnitMember.objects.filter(ultraserver_id__in=running).values("unit").distinct().count() == 1
    )


@pytest.mark.slow  # transactional (flushes and restores the database)
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_accept_takes_the_site_lock_before_the_unit(units, django_capture_on_commit_callbacks):
    """While another transaction holds the site's lock (a placement, a batch start), an accept
    waits for it before it locks the unit: placements and accepts are serialized, always site
    then unit."""
    chip_fault(units.members[1][2], django_capture_on_commit_callbacks)
    proposal = UnitReplacement.objects.get(unit=units.units[1])
    results: list[str] = []

    def accept() -> None:
        try:
            results.append(lifecycle.accept(proposal, CTX).state)
        finally:
            connection.close()

    thread = threading.Thread(target=accept)
    with transaction.atomic():
        lock_capacity_scope(site_ids=[units.site.pk])
        thread.start()
        thread.join(3)
        assert thread.is_alive() and not results  # waiting for the site
        # it has not locked the unit meanwhile
        WorkloadUnit.objects.select_for_update(nowait=True).get(pk=units.units[1].pk)
    thread.join(60)
    assert results == ["done"]
