"""Disruption budgets (``provisioning.budgets``): the capacity floor counts the servers active
workflows have already claimed, is checked under the site's lock in the transaction that claims
them (a maintain when it is created or started, an upgrade batch when it starts), and holds
when many requests race for the last room."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests
from django.db import connection

from factory.inventory.models import UltraServer
from provisioning import budgets, rollout, services
from provisioning.models import CapacityFloor, Workflow, WorkflowEvent, WorkflowTarget
from tenants.errors import Conflict
from tenants.services.changes import save_object
from tenants.services.tokens import issue_token
from tests.support.api import assert_error_body
from tests.support.fleet import CTX, build_fleet, make_rack, make_server
from tests.support.harness import answer_commands, expire_lost_commands, run_due_steps
from tests.support.workflows import always_open, make_releases, put_in_service

pytestmark = pytest.mark.django_db

FAST = {"firmware_version": "2.0", "soak_seconds": 0, "poll_seconds": 1, "canary_size": 0}


def serving_site(fleet, n: int) -> list[UltraServer]:
    """Alpha's site with ``n`` in-service UltraServers, one per rack (42U each), and the
    contracted power and cooling for them (~188 kW each) and one more."""
    site = fleet.sites["alpha"]
    site.contracted_power_kw = site.contracted_cooling_kw = Decimal(200 * (n + 1))
    save_object(site, CTX)
    servers = [put_in_service(fleet.servers["alpha"])]
    for i in range(2, n + 1):
        rack = make_rack(site, f"{site.code}-R{i:02d}")
        servers.append(put_in_service(make_server(f"{site.code}-SRV{i}", rack=rack)))
    always_open(site)
    return servers


def in_service_at(site) -> int:
    return UltraServer.objects.filter(rack__site=site, lifecycle_state="in-service").count()


def maintain(servers, **kwargs):
    workflow, _ = services.create_workflow("maintain", servers, CTX, reason="planned", **kwargs)
    return workflow


def upgrade(servers, **spec):
    workflow, _ = services.create_workflow("upgrade", servers, CTX, spec={**FAST, **spec})
    return workflow


@pytest.fixture
def six(fleet, releases):
    return serving_site(fleet, 6)


def test_room_counts_servers_claimed_by_active_workflows(fleet, six):
    site = fleet.sites["alpha"]
    assert budgets.room(site).free is None  # no floor: no limit
    CapacityFloor.objects.create(site=site, min_in_service=3)
    assert budgets.room(site) == budgets.Room(site.code, 3, 6, 0)
    maintain(six[:1])  # claimed when created, still in service until drained
    upgrade(six[1:4])  # claims nothing until a batch starts
    room = budgets.room(site)
    assert (room.in_service, room.claimed, room.free) == (6, 1, 2)


def test_a_maintain_over_the_floor_is_refused_naming_it_and_nothing_is_written(fleet, six):
    site = fleet.sites["alpha"]
    CapacityFloor.objects.create(site=site, min_in_service=4)
    first = maintain(six[:2])  # room for exactly two
    before = (Workflow.objects.count(), WorkflowTarget.objects.count())
    events = WorkflowEvent.objects.count()
    with pytest.raises(Conflict) as refused:
        maintain(six[2:3])  # in service, but the first one's two are already claimed
    assert refused.value.code == "capacity_floor"
    assert refused.value.errors[0].field == "targets"
    message = refused.value.message
    assert "below the tenant's capacity floor of 4" in message
    assert "6 in service, 2 of them already claimed by active workflows; room for 0" in message
    assert (Workflow.objects.count(), WorkflowTarget.objects.count()) == before
    assert WorkflowEvent.objects.count() == events

    response = fleet.client("provider_admin").post(
        "/api/v1/workflows/",
        {"kind": "maintain", "targets": {"ultraservers": [six[3].pk]}, "reason": "planned"},
    )
    body = assert_error_body(response, 409)
    assert body["code"] == "capacity_floor"
    assert body["errors"][0]["field"] == "targets" and "floor of 4" in body["message"]
    assert Workflow.objects.count() == before[0]

    services.cancel(first, CTX, reason="not needed")  # its claim ends with it
    assert budgets.room(site).claimed == 0
    assert maintain(six[2:3]).state == "running"


def test_a_proposed_maintain_claims_when_it_starts(fleet, six):
    site = fleet.sites["alpha"]
    CapacityFloor.objects.create(site=site, min_in_service=5)
    proposed = maintain(six[:1], start=False)  # claims nothing yet
    assert budgets.room(site).claimed == 0
    maintain(six[1:2])  # takes the one room there is
    with pytest.raises(Conflict) as refused:
        services.start(proposed, CTX)
    assert refused.value.code == "capacity_floor"
    proposed.refresh_from_db()
    assert proposed.state == "proposed"
    assert not proposed.targets.filter(active=True).exists()


def test_a_deploy_takes_nothing_out_of_service(fleet, six):
    """A deploy starts only from planned / install-failed: a site at its floor still takes one."""
    site = fleet.sites["alpha"]
    CapacityFloor.objects.create(site=site, min_in_service=6)
    new = make_server("ALP1-NEW", rack=make_rack(site, "ALP1-R99"))
    workflow, _ = services.create_workflow("deploy", [new], CTX, spec={"firmware_version": "1.0"})
    assert workflow.state == "running"
    with pytest.raises(Conflict):
        maintain(six[:1])


def test_an_upgrade_batch_waits_at_the_floor_then_starts_within_the_room(fleet, six):
    site = fleet.sites["alpha"]
    floor = CapacityFloor.objects.create(site=site, min_in_service=6)
    workflow = upgrade(six, batch_size=10, max_unavailable_per_domain=0)
    assert rollout.advance(workflow.pk) == "waiting-floor"
    assert rollout.advance(workflow.pk) == "waiting-floor"  # told once, not at every advance
    workflow.refresh_from_db()
    assert workflow.state == "running"
    assert workflow.state_reason == "waiting: capacity floor (6 in service, floor 6)"
    assert list(
        WorkflowEvent.objects.filter(workflow=workflow, kind="waiting-floor").values_list(
            "message", flat=True
        )
    ) == ["waiting: capacity floor (6 in service, floor 6)"]
    assert not workflow.targets.exclude(state="pending").exists()

    floor.min_in_service = 4
    floor.save()
    assert rollout.advance(workflow.pk) == "started"
    workflow.refresh_from_db()
    assert workflow.state_reason == ""
    assert workflow.targets.filter(state="running", batch=0).count() == 2


def test_a_batch_in_flight_counts_against_a_maintain_and_a_maintain_against_the_next_batch(
    fleet, six, agent, hw
):
    site = fleet.sites["alpha"]
    CapacityFloor.objects.create(site=site, min_in_service=4)  # room for two
    rollout_ = upgrade(six[:4], batch_size=10)
    assert rollout.advance(rollout_.pk) == "started"
    batch = list(rollout_.targets.filter(state="running").values_list("ultraserver_id", flat=True))
    assert len(batch) == 2
    # Started, not yet drained: both still in service, both claimed.
    assert in_service_at(site) == 6 and budgets.room(site).claimed == 2
    with pytest.raises(Conflict) as refused:
        maintain(six[5:6])
    assert refused.value.code == "capacity_floor"
    run_due_steps(rollout_.pk)
    answer_commands(agent, hw)
    run_due_steps(rollout_.pk)  # drained: out of service, no longer claimed
    assert in_service_at(site) == 4 and budgets.room(site).claimed == 0
    with pytest.raises(Conflict):
        maintain(six[5:6])
    for _ in range(20):  # the batch finishes: its servers are back in service
        answer_commands(agent, hw)
        run_due_steps(rollout_.pk)
        expire_lost_commands()
        if not rollout_.targets.filter(state="running").exists():
            break
    assert set(rollout_.targets.filter(state="succeeded").values_list("ultraserver_id", flat=True))
    assert set(batch) == set(
        rollout_.targets.filter(state="succeeded").values_list("ultraserver_id", flat=True)
    )
    assert in_service_at(site) == 6
    maintain(six[5:6])  # room for two again: the maintain takes one...
    assert rollout.advance(rollout_.pk) == "started"  # ...and the next batch the other
    assert rollout_.targets.filter(state="running").count() == 1


def test_the_per_domain_limit_counts_what_other_workflows_have_out_in_the_rack(fleet, six):
    site = fleet.sites["alpha"]
    rack = make_rack(site, "ALP1-AIR", cooling="air")
    first, second = (
        put_in_service(make_server(f"ALP1-T2-{i}", "trn2-ultraserver", rack, position=p))
        for i, p in ((1, 1), (2, 21))
    )
    repair = maintain([first])
    assert rollout.advance(repair.pk) == "started"  # no limit of its own: it goes
    careful = maintain([second], spec={"max_unavailable_per_domain": 1})
    assert rollout.advance(careful.pk) == "waiting-domain"
    careful.refresh_from_db()
    assert careful.state == "running" and "per-domain limit" in careful.state_reason
    assert "ALP1-AIR" in careful.state_reason
    assert WorkflowEvent.objects.filter(workflow=careful, kind="waiting-domain").count() == 1
    assert not careful.targets.exclude(state="pending").exists()
    elsewhere = maintain(six[:1], spec={"max_unavailable_per_domain": 1})  # another rack
    assert rollout.advance(elsewhere.pk) == "started"
    repair.targets.update(state="succeeded", active=False)  # its server is done
    assert rollout.advance(careful.pk) == "started"


def drive_counting_floor(workflow, agent, hw, site, floor: int, rounds: int) -> Workflow:
    """``harness.drive``, checking after every move that the site stays at or above ``floor``."""
    for _ in range(rounds):
        for move in (
            lambda: answer_commands(agent, hw),
            lambda: run_due_steps(workflow.pk),
            lambda: answer_commands(agent, hw),
            expire_lost_commands,
            lambda: rollout.advance(workflow.pk),
        ):
            move()
            assert in_service_at(site) >= floor
        workflow.refresh_from_db()
        if workflow.state in ("succeeded", "failed", "cancelled", "paused"):
            break
    return workflow


@pytest.mark.slow  # 40 servers, 20 batches (the six-server tests above run the same rules fast)
def test_an_upgrade_at_floor_38_of_40_takes_batches_of_two_and_finishes(fleet, releases, agent, hw):
    """The issue's case: batch 10 took the site from 40 to 30 in service past a floor of 38."""
    servers = serving_site(fleet, 40)
    site = fleet.sites["alpha"]
    CapacityFloor.objects.create(site=site, min_in_service=38)
    workflow = upgrade(servers, batch_size=10, canary_size=1)
    workflow = drive_counting_floor(workflow, agent, hw, site, 38, rounds=300)
    assert workflow.state == "succeeded", workflow.state_reason
    sizes = {}
    for batch in workflow.targets.values_list("batch", flat=True):
        sizes[batch] = sizes.get(batch, 0) + 1
    assert sizes[0] == 1  # the canary
    assert max(sizes.values()) == 2 and sum(sizes.values()) == 40
    assert in_service_at(site) == 40
    assert set(
        UltraServer.objects.filter(rack__site=site).values_list("firmware_version", flat=True)
    ) == {"2.0"}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_twenty_simultaneous_maintains_against_room_for_one_one_wins(live_server):
    """Over real HTTP (Django's threaded live server: each request its own thread and database
    connection), 20 maintain requests for 20 different in-service servers race for the one
    server of room above the floor."""
    fleet = build_fleet()
    make_releases()
    servers = serving_site(fleet, 21)
    site = fleet.sites["alpha"]
    CapacityFloor.objects.create(site=site, min_in_service=20)
    _, token = issue_token(fleet.people["provider_admin"], CTX, name="race", scope="write")
    barrier = threading.Barrier(20)

    def request(server: UltraServer) -> requests.Response:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {token}"
            barrier.wait(30)
            return session.post(
                f"{live_server.url}/api/v1/workflows/",
                json={
                    "kind": "maintain",
                    "targets": {"ultraservers": [server.pk]},
                    "reason": "race",
                },
                timeout=120,
            )

    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            responses = list(pool.map(request, servers[1:]))
    finally:
        connection.close()
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 19, [r.text[:300] for r in responses]
    for refused in (r.json() for r in responses if r.status_code == 409):
        assert refused["code"] == "capacity_floor"
        assert refused["errors"][0]["field"] == "targets"
        assert "capacity floor of 20" in refused["message"]
        assert "21 in service, 1 of them already claimed" in refused["message"]
    assert Workflow.objects.count() == 1
    assert WorkflowTarget.objects.count() == 1
    room = budgets.room(site)
    assert room.in_service - room.claimed == 20 == room.floor  # the floor holds
