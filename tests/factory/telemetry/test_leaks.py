"""Leaks: a ``leak`` event raises a critical fault and isolates at once, through the agent
endpoint against real PostgreSQL. One power-off per open leak fault (repeated and concurrent
events too), the tenant told in its event log (and so its webhooks), the command audited as the
fault's, no maintenance window waited for; a CDU's leak isolates every server it cools."""

from __future__ import annotations

import datetime as dt
import threading
import time
import zoneinfo

import pytest
from django.db import connection, transaction
from django.utils import timezone

from factory import wire
from factory.agents import services as agents
from factory.agents.models import AgentCommand
from factory.inventory.models import UltraServer
from factory.telemetry import events as telemetry_events
from factory.telemetry import faults
from factory.telemetry.models import DeviceReading, Fault
from provisioning import rollout, windows
from provisioning.models import MaintenanceWindow, Workflow
from tenants.events.kinds import EventKind
from tenants.events.models import Event, WebhookDelivery, WebhookSubscription
from tenants.models import AuditEvent
from tests.support.api import gateway
from tests.support.fleet import make_rack, make_server
from tests.support.telemetry import agent_client
from tests.support.workflows import put_in_service

pytestmark = pytest.mark.django_db


def leak(source: str, message: str = "LeakDetector Tray3ColdPlate: Critical") -> wire.Event:
    return wire.Event(
        source=source,
        kind=wire.EventKind.LEAK,
        message=message,
        timestamp=timezone.now().isoformat(),
    )


def post(client, *batch: wire.Event):
    return client.post(
        gateway(wire.EVENTS_PATH), wire.EventBatch(events=list(batch)), format="json"
    )


def power_offs(server) -> list[AgentCommand]:
    return list(AgentCommand.objects.filter(ultraserver=server, kind=wire.CommandKind.RESET))


@pytest.fixture
def site(fleet):
    server = put_in_service(fleet.servers["alpha"])
    client, agent = agent_client(fleet.sites["alpha"])
    return client, agent, server


@pytest.fixture
def closed_window(fleet):
    """The site's only approved window opens in two hours (site-local): an upgrade would wait
    for it; a leak must not."""
    site = fleet.sites["alpha"]
    local = timezone.now().astimezone(zoneinfo.ZoneInfo(site.time_zone))
    window = MaintenanceWindow.objects.create(
        site=site,
        name="nightly",
        weekdays=list(range(7)),
        start_time=(local + dt.timedelta(hours=2)).time(),
        duration_minutes=60,
        status="approved",
    )
    assert windows.open_until(rollout.approved_windows(site), timezone.now()) is None
    return window


def test_a_tray_leak_is_a_critical_fault_and_one_power_off_at_once(site, fleet, closed_window):
    client, agent, server = site
    answer = post(client, leak(server.serial))
    assert answer.status_code == 200, answer.content
    assert answer.json()["faults_opened"] == 1
    fault = Fault.objects.get()
    assert (fault.rule, fault.ultraserver_id, fault.chip_index) == ("leak", server.pk, None)
    assert "Tray3ColdPlate" in fault.detail
    assert wire.severity_of(fault.rule) == wire.Severity.CRITICAL

    (command,) = power_offs(server)
    assert command.params == {wire.CommandParam.RESET_TYPE: "ForceOff"}
    assert command.requested_by == f"fault:{fault.pk}"
    # The agent gets it on its next claim: nothing waits for the (closed) window or a drain.
    claimed = agents.claim(agent, limit=10)
    assert [c.pk for c in claimed] == [command.pk]
    assert not AgentCommand.objects.filter(kind=wire.CommandKind.DRAIN).exists()

    server.refresh_from_db()
    assert server.isolated_since is not None and server.in_maintenance
    assert f"fault #{fault.pk}" in server.isolation_reason
    assert server.lifecycle_state == "in-service"  # the maintain workflow moves it, later


def test_the_tenant_is_told_at_once_and_its_webhooks_get_it(site, fleet):
    client, _, server = site
    hook = WebhookSubscription.objects.create(
        tenant=fleet.alpha,
        name="pager",
        url="https://hooks.alpha.example/pager",
        secret="s",
        kinds=[EventKind.SERVER_ISOLATED.value],
    )
    post(client, leak(server.serial))
    fault = Fault.objects.get()
    (command,) = power_offs(server)
    opened = Event.objects.get(kind=EventKind.FAULT_OPENED)
    assert opened.data["severity"] == "critical" and opened.data["rule"] == "leak"
    isolated = Event.objects.get(kind=EventKind.SERVER_ISOLATED)
    assert isolated.tenant_id == fleet.alpha.pk
    assert (isolated.subject_type, isolated.subject_id) == ("ultraserver", str(server.pk))
    assert isolated.data["fault"] == fault.pk and isolated.data["severity"] == "critical"
    assert isolated.data["command"] == str(command.pk)
    assert (isolated.data["action"], isolated.data["reset_type"]) == ("power-off", "ForceOff")
    assert list(WebhookDelivery.objects.values_list("subscription", "event")) == [
        (hook.pk, isolated.pk)
    ]
    # The other tenant hears nothing.
    assert not Event.objects.filter(tenant=fleet.beta).exists()


def test_the_power_off_is_audited_as_the_faults(site):
    client, _, server = site
    post(client, leak(server.serial))
    fault = Fault.objects.get()
    (command,) = power_offs(server)
    entry = AuditEvent.objects.get(object_type="agents.agentcommand", object_id=str(command.pk))
    assert (entry.actor_username, entry.source, entry.action) == ("system", "system", "create")
    assert entry.after["requested_by"] == f"fault:{fault.pk}"
    assert entry.after["params"] == {"reset_type": "ForceOff"}
    marked = AuditEvent.objects.filter(
        object_type="inventory.ultraserver", object_id=str(server.pk), action="update"
    ).order_by("-id")[0]
    assert f"fault #{fault.pk}" in marked.after["isolation_reason"]
    assert marked.after["isolated_since"] is not None


def test_repeated_leak_events_send_no_second_power_off(site):
    client, _, server = site
    post(client, leak(server.serial), leak(server.serial, "LeakDetector Manifold: Critical"))
    assert post(client, leak(server.serial)).json()["faults_opened"] == 0
    assert Fault.objects.count() == 1
    assert len(power_offs(server)) == 1
    assert Event.objects.filter(kind=EventKind.SERVER_ISOLATED).count() == 1


def test_the_maintain_workflow_takes_over_afterwards(site, django_capture_on_commit_callbacks):
    client, _, server = site
    with django_capture_on_commit_callbacks(execute=True):
        post(client, leak(server.serial))
    workflow = Workflow.objects.get(kind="maintain")
    assert workflow.targets.get().ultraserver_id == server.pk
    # It was opened after the power-off, which did not wait for it.
    (command,) = power_offs(server)
    assert command.created_at <= workflow.created_at


def test_a_repaired_server_is_no_longer_isolated_and_a_new_leak_isolates_again(site):
    client, _, server = site
    post(client, leak(server.serial))
    assert faults.clear_server(server.pk, "repaired by maintain workflow #1") == 1
    server.refresh_from_db()
    assert server.isolated_since is None and server.isolation_reason == ""
    post(client, leak(server.serial))
    assert len(power_offs(server)) == 2  # one per open leak fault
    server.refresh_from_db()
    assert server.isolated_since is not None


def test_a_cdu_leak_isolates_every_server_the_cdu_cools(site, fleet):
    """The site's CDU (known from its readings, no rack: it cools the hall's liquid loop, as
    the simulated site's does) → every server in a liquid-cooled rack there, each with its own
    fault; an air-cooled rack's server and a planned server are left alone."""
    client, _, first = site
    code = fleet.sites["alpha"].code
    second = put_in_service(make_server(f"{code}-SRV2", rack=make_rack(fleet.sites["alpha"], "R2")))
    air_rack = make_rack(fleet.sites["alpha"], "R3", cooling="air")
    air = put_in_service(make_server(f"{code}-SRV3", "trn2-ultraserver", rack=air_rack))
    planned = make_server(f"{code}-SRV4", rack=make_rack(fleet.sites["alpha"], "R4"))
    DeviceReading.objects.create(
        site=fleet.sites["alpha"],
        source=f"{code}-CDU1",
        kind=wire.DeviceKind.CDU,
        ts=timezone.now(),
        values={},
    )
    answer = post(client, leak(f"{code}-CDU1", "LeakDetector CDU1Tray: Critical"))
    assert answer.status_code == 200, answer.content
    assert answer.json()["faults_opened"] == 2
    isolated = {f.ultraserver_id for f in Fault.objects.filter(rule="leak")}
    assert isolated == {first.pk, second.pk}
    for server in (first, second):
        assert len(power_offs(server)) == 1
        assert f"{code}-CDU1" in Fault.objects.get(ultraserver=server).detail
    assert power_offs(air) == [] and power_offs(planned) == []
    # Again: still open, nothing more.
    assert post(client, leak(f"{code}-CDU1")).json()["faults_opened"] == 0
    assert AgentCommand.objects.filter(kind=wire.CommandKind.RESET).count() == 2


def test_a_rack_leak_isolates_that_racks_servers(site, fleet):
    client, _, first = site
    code = fleet.sites["alpha"].code
    other = put_in_service(make_server(f"{code}-SRV2", rack=make_rack(fleet.sites["alpha"], "R2")))
    post(client, leak(wire.pdu_source(fleet.racks["alpha"].name), "LeakDetector RackTray"))
    assert len(power_offs(first)) == 1 and power_offs(other) == []


def test_a_leak_at_an_unknown_device_is_a_site_fault_and_powers_nothing_off(site):
    client, _, _ = site
    assert post(client, leak("FRA9-CHILLER")).json()["faults_opened"] == 1
    fault = Fault.objects.get()
    assert (fault.rule, fault.ultraserver_id) == ("leak", None)
    assert not AgentCommand.objects.exists()


def test_a_leak_at_another_sites_server_is_refused(site, fleet):
    client, _, _ = site
    answer = post(client, leak(fleet.servers["beta"].serial))
    assert answer.status_code == 403
    assert answer.json()["code"] == "other_site"
    assert not AgentCommand.objects.exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_leak_posts_send_one_power_off(fleet):
    """Two batches for the same server at once: the first holds its transaction open after
    opening the fault; the second (a real POST) blocks on the open-fault index, then finds the
    fault taken. One fault, one command, one tenant event."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's row locks")
    server = put_in_service(fleet.servers["alpha"])
    client, agent = agent_client(fleet.sites["alpha"])
    opened, release = threading.Event(), threading.Event()
    answers: list[int] = []

    def holding_batch():
        try:
            with transaction.atomic():
                telemetry_events.record_events(agent, [dict(leak(server.serial))])
                opened.set()
                release.wait(10)
        finally:
            connection.close()

    def racing_post():
        try:
            answers.append(post(client, leak(server.serial)).json()["faults_opened"])
        finally:
            connection.close()

    first = threading.Thread(target=holding_batch)
    first.start()
    assert opened.wait(10)
    second = threading.Thread(target=racing_post)
    second.start()
    time.sleep(0.5)  # the second is now waiting on the first's uncommitted fault
    release.set()
    first.join(10)
    second.join(10)
    assert answers == [0]
    assert Fault.objects.filter(rule="leak").count() == 1
    assert len(power_offs(server)) == 1
    assert Event.objects.filter(kind=EventKind.SERVER_ISOLATED).count() == 1
    assert UltraServer.objects.get(pk=server.pk).isolated_since is not None


# --- review findings: the CDU's scope decided from the event, isolation confirmed ------------


def test_a_cdu_leak_before_any_cdu_reading_isolates_every_liquid_cooled_server(site, fleet):
    """The CDU's first leak can come before its first reading (or egress keeps its readings
    at the site): the event's ``device_kind`` says it is a CDU, and with no CDU → rack map the
    fail-safe scope is every liquid-cooled server at the site."""
    client, _, first = site
    code = fleet.sites["alpha"].code
    second = put_in_service(make_server(f"{code}-SRV2", rack=make_rack(fleet.sites["alpha"], "R2")))
    air = put_in_service(
        make_server(
            f"{code}-SRV3",
            "trn2-ultraserver",
            rack=make_rack(fleet.sites["alpha"], "R3", cooling="air"),
        )
    )
    assert not DeviceReading.objects.exists()
    event = {**leak(f"{code}-CDU1", "LeakDetector CDU1Tray: Critical"), "device_kind": "cdu"}
    answer = post(client, event)
    assert answer.status_code == 200, answer.content
    assert {f.ultraserver_id for f in Fault.objects.filter(rule="leak")} == {first.pk, second.pk}
    assert len(power_offs(first)) == len(power_offs(second)) == 1 and power_offs(air) == []


def test_a_cdu_known_to_cool_one_rack_isolates_that_rack_only(site, fleet):
    client, _, first = site
    code = fleet.sites["alpha"].code
    other = put_in_service(make_server(f"{code}-SRV2", rack=make_rack(fleet.sites["alpha"], "R2")))
    DeviceReading.objects.create(
        site=fleet.sites["alpha"],
        source=f"{code}-CDU7",
        kind=wire.DeviceKind.CDU,
        ts=timezone.now(),
        values={},
        rack=other.rack,
    )
    post(client, {**leak(f"{code}-CDU7"), "device_kind": "cdu"})
    assert power_offs(first) == [] and len(power_offs(other)) == 1


def test_an_unknown_leak_source_is_a_critical_site_fault_saying_nothing_was_isolated(site):
    client, _, _ = site
    post(client, leak("FRA9-CHILLER"))
    fault = Fault.objects.get()
    assert fault.ultraserver_id is None and "nothing isolated" in fault.detail
    opened = Event.objects.get(kind=EventKind.FAULT_OPENED)
    assert (opened.data["severity"], opened.data["server"]) == ("critical", None)


def test_a_device_kind_outside_the_contract_is_a_400_naming_it(site):
    client, _, server = site
    answer = post(client, {**leak(server.serial), "device_kind": "chiller"})
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["field"] == "events.0.device_kind"
    assert not Fault.objects.exists()


def reason_of(server) -> str:
    return UltraServer.objects.values_list("isolation_reason", flat=True).get(pk=server.pk)


def answer_power_off(agent, ok: bool, error: str = "") -> AgentCommand:
    (command,) = agents.claim(agent, limit=10)
    assert command.kind == wire.CommandKind.RESET
    agents.complete(agent, command.id, ok=ok, result={}, error=error)
    return command


def test_the_isolation_is_pending_until_the_power_off_succeeds(
    site, django_capture_on_commit_callbacks
):
    client, agent, server = site
    post(client, leak(server.serial))
    assert reason_of(server).startswith("power-off pending: ")
    with django_capture_on_commit_callbacks(execute=True):
        answer_power_off(agent, ok=True)
    assert reason_of(server).startswith("powered off: ")
    assert "not confirmed" not in Fault.objects.get().detail
    assert len(power_offs(server)) == 1


def test_a_failed_power_off_is_sent_again_up_to_three_times(
    site, django_capture_on_commit_callbacks
):
    client, agent, server = site
    post(client, leak(server.serial))
    for attempt in (1, 2):
        with django_capture_on_commit_callbacks(execute=True):
            answer_power_off(agent, ok=False, error="BMC busy")
        assert len(power_offs(server)) == attempt + 1
        detail = Fault.objects.get().detail
        assert f"isolation not confirmed: power-off {attempt} of 3 failed (BMC busy)" in detail
        assert reason_of(server).startswith("power-off pending: ")
    with django_capture_on_commit_callbacks(execute=True):
        answer_power_off(agent, ok=False, error="BMC busy")
    assert len(power_offs(server)) == 3  # bounded: no fourth
    assert "all 3 power-offs failed" in Fault.objects.get().detail
    assert reason_of(server).startswith("power-off not confirmed: ")
    # The agent's answers were all accepted (the re-send never fails the agent's request).
    assert set(AgentCommand.objects.values_list("state", flat=True)) == {"failed"}


def test_an_expired_power_off_is_sent_again_and_then_confirmed(
    site, django_capture_on_commit_callbacks
):
    client, agent, server = site
    post(client, leak(server.serial))
    (lost,) = agents.claim(agent, limit=10)
    AgentCommand.objects.filter(pk=lost.pk).update(
        result_due_at=timezone.now() - dt.timedelta(seconds=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert agents.expire_overdue() == 1
    assert [c.state for c in power_offs(server)] == ["expired", "queued"]
    assert "power-off 1 of 3 expired" in Fault.objects.get().detail
    with django_capture_on_commit_callbacks(execute=True):
        answer_power_off(agent, ok=True)
    assert reason_of(server).startswith("powered off: ")
    assert "not confirmed" not in Fault.objects.get().detail


def test_a_cleared_fault_sends_no_more_power_offs(site, django_capture_on_commit_callbacks):
    client, agent, server = site
    post(client, leak(server.serial))
    faults.clear_server(server.pk, "repaired")
    with django_capture_on_commit_callbacks(execute=True):
        answer_power_off(agent, ok=False, error="BMC busy")
    assert len(power_offs(server)) == 1


def test_a_stale_save_of_the_server_does_not_undo_its_isolation(site):
    """An API or admin save of an instance read before the leak (``save_object`` saves every
    field) keeps the isolation recorded meanwhile: those fields come from the locked row."""
    from factory.inventory.services import save_ultraserver
    from tests.support.fleet import CTX

    client, _, server = site
    stale = UltraServer.objects.get(pk=server.pk)
    post(client, leak(server.serial))
    stale.runtime_version = "neuron-sdk-2.21"
    save_ultraserver(stale, CTX)
    stored = UltraServer.objects.get(pk=server.pk)
    assert stored.runtime_version == "neuron-sdk-2.21"
    assert stored.isolated_since is not None and "fault #" in stored.isolation_reason
