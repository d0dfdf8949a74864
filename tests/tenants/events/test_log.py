"""The event log numbers events in commit order, so a reader resuming after N never misses a
transaction that began earlier and committed later."""

import threading

import pytest
from django.db import connection, transaction

from tenants.events.kinds import EventKind
from tenants.events.models import Event, WebhookDelivery, WebhookSubscription
from tenants.events.services import emit, event_payload
from tests.support.events import commit_events
from tests.support.fleet import make_tenant


@pytest.mark.django_db
def test_an_event_has_no_sequence_until_its_transaction_commits():
    acme = make_tenant("acme")
    event = emit(EventKind.WORKFLOW_CREATED, acme, tenant=acme, data={"x": 1})
    event.refresh_from_db()
    assert event.sequence is None
    commit_events()
    event.refresh_from_db()
    assert event.sequence is not None
    assert event_payload(event) == {
        "id": event.sequence,
        "kind": "workflow.created",
        "occurred_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "tenant": "acme",
        "subject": {"type": "tenant", "id": str(acme.pk), "name": str(acme)},
        "data": {"x": 1},
    }


@pytest.mark.django_db
def test_emit_writes_a_delivery_for_each_subscription_that_wants_the_kind():
    acme, other = make_tenant("acme"), make_tenant("other")
    every = WebhookSubscription.objects.create(tenant=acme, name="all", url="http://x/", secret="s")
    WebhookSubscription.objects.create(
        tenant=acme, name="faults", url="http://x/", secret="s", kinds=["fault.opened"]
    )
    WebhookSubscription.objects.create(
        tenant=acme, name="off", url="http://x/", secret="s", is_active=False
    )
    WebhookSubscription.objects.create(tenant=other, name="all", url="http://x/", secret="s")
    event = emit(EventKind.WORKFLOW_CREATED, acme, tenant=acme)
    assert list(WebhookDelivery.objects.values_list("subscription", "event")) == [
        (every.pk, event.pk)
    ]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_sequence_follows_commit_order_not_insert_order():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers")
    acme = make_tenant("acme")
    inserted, release = threading.Event(), threading.Event()

    def slow_writer():
        try:
            with transaction.atomic():
                emit(EventKind.WORKFLOW_CREATED, acme, tenant=acme, name="first inserted")
                inserted.set()
                release.wait(10)
        finally:
            connection.close()

    worker = threading.Thread(target=slow_writer)
    worker.start()
    assert inserted.wait(10)
    with transaction.atomic():
        emit(EventKind.WORKFLOW_CREATED, acme, tenant=acme, name="second inserted")
    release.set()
    worker.join(10)
    by_sequence = list(Event.objects.order_by("sequence").values_list("subject_name", "id"))
    names = [name for name, _ in by_sequence]
    ids = [pk for _, pk in by_sequence]
    assert names == ["second inserted", "first inserted"]
    assert ids[0] > ids[1]  # the ids were drawn the other way round
