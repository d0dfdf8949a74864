"""Faults tell their site's tenant: one ``fault.opened`` per fault opened, one
``fault.resolved`` per fault cleared, written in the transaction that opens or clears it."""

import pytest
from django.db import transaction
from django.utils import timezone

from factory import wire
from factory.telemetry import faults
from factory.telemetry.models import Fault
from factory.telemetry.rules import Finding
from factory.wire import FaultRule
from tenants.events.kinds import EventKind, timestamp
from tenants.events.models import Event
from tests.support.api import gateway
from tests.support.telemetry import agent_client, feed, pdu_report, post
from tests.support.workflows import put_in_service

pytestmark = pytest.mark.django_db


@pytest.fixture
def site(fleet):
    server = put_in_service(fleet.servers["alpha"])
    client, _ = agent_client(fleet.sites["alpha"])
    return client, server


def chip_failure(client, serial: str, chip: int):
    event = wire.Event(
        source=serial,
        kind=wire.EventKind.CHIP_FAILURE,
        chip=chip,
        timestamp=timezone.now().isoformat(),
    )
    return client.post(gateway(wire.EVENTS_PATH), wire.EventBatch(events=[event]), format="json")


def test_a_fault_opened_is_one_event_of_the_sites_tenant(site, fleet):
    client, server = site
    assert chip_failure(client, server.serial, 3).status_code == 200
    assert chip_failure(client, server.serial, 3).status_code == 200  # still open: no new one
    fault = Fault.objects.get()
    event = Event.objects.get()
    assert (event.kind, event.tenant_id) == (EventKind.FAULT_OPENED, fleet.alpha.pk)
    assert (event.subject_type, event.subject_id) == ("fault", str(fault.pk))
    assert event.data == {
        "rule": FaultRule.CHIP_DOWN,
        "severity": "critical",
        "detail": fault.detail,
        "site": fleet.sites["alpha"].code,
        "server": server.serial,
        "chip": 3,
        "opened_at": timestamp(fault.opened_at),
    }


def test_a_fault_cleared_is_one_event_and_a_second_clear_says_nothing(site, fleet):
    client, _ = site
    source = wire.pdu_source(fleet.racks["alpha"].name)
    post(client, [pdu_report(source, 1, {"A1": feed(0.0, up=False)})])
    post(client, [pdu_report(source, 2, {"A1": feed(60000.0)})])
    post(client, [pdu_report(source, 3, {"A1": feed(60000.0)})])  # healthy again: nothing open
    fault = Fault.objects.get()
    assert fault.cleared_at is not None
    opened, resolved = Event.objects.order_by("id")
    assert (opened.kind, resolved.kind) == (EventKind.FAULT_OPENED, EventKind.FAULT_RESOLVED)
    assert resolved.tenant_id == fleet.alpha.pk and resolved.subject_id == str(fault.pk)
    assert resolved.data["server"] is None and resolved.data["rule"] == FaultRule.FEED_LOSS
    assert resolved.data["reason"] == "condition ended"
    assert resolved.data["cleared_at"] == timestamp(fault.cleared_at)


def test_clearing_a_servers_faults_is_one_event_each(site, fleet):
    client, server = site
    chip_failure(client, server.serial, 1)
    chip_failure(client, server.serial, 2)
    assert faults.clear_server(server.pk, "repaired") == 2
    assert faults.clear_server(server.pk, "repaired") == 0
    resolved = Event.objects.filter(kind=EventKind.FAULT_RESOLVED)
    assert sorted(e.data["chip"] for e in resolved) == [1, 2]
    assert {e.tenant_id for e in resolved} == {fleet.alpha.pk}


def test_each_tenant_hears_of_its_own_sites_faults(site, fleet):
    beta = fleet.sites["beta"]
    faults.raise_findings(beta.pk, [], [Finding(FaultRule.AGENT_SILENT, "silent", subject="a")])
    event = Event.objects.get()
    assert (event.tenant_id, event.data["site"]) == (fleet.beta.pk, beta.code)


def test_a_rolled_back_fault_leaves_no_event(site, fleet):
    _, server = site
    with pytest.raises(RuntimeError), transaction.atomic():
        faults.raise_findings(
            fleet.sites["alpha"].pk, [(server.pk, Finding(FaultRule.CHIP_DOWN, "down", 4))], []
        )
        assert Event.objects.count() == 1
        raise RuntimeError("the batch failed")
    assert not Fault.objects.exists() and not Event.objects.exists()
    client, _ = site
    chip_failure(client, server.serial, 4)
    with pytest.raises(RuntimeError), transaction.atomic():
        faults.clear_server(server.pk, "repaired")
        raise RuntimeError("the step failed")
    assert list(Event.objects.values_list("kind", flat=True)) == [EventKind.FAULT_OPENED]
    assert Fault.objects.get().cleared_at is None
