"""Webhooks with real processes: private Celery workers and a private Redis against the test
database, and a receiving HTTP server in the test process. A worker SIGKILLed in the middle of
a delivery, and a broker restarted empty with hints queued, lose nothing: the sweep (what beat
runs every 10 s; here every half second) finds every due delivery in the database. Deliveries
travel on their own queue: a worker of the workflows' queue never takes one."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from celery import Celery
from django.conf import settings as django_settings
from django.db import transaction

from tenants.events import webhooks
from tenants.events.delivery import DELIVER_TASK, SWEEP_TASK
from tenants.events.kinds import EventKind
from tenants.events.models import WebhookDelivery, WebhookSubscription
from tenants.events.services import emit
from tests.support.fleet import CTX, make_tenant
from tests.support.processes import app_env, free_port, redis_process, worker_process
from tests.support.webhooks import HOLD, Receiver, signature_ok

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

#: What the tests send (``committed_event``); not the subscription's own ``webhook.created``.
KINDS = ["workflow.state_changed"]
HOOK_ENV = {
    "WEBHOOK_ALLOW_LOOPBACK": "true",
    "WEBHOOK_ATTEMPT_DEADLINE_SECONDS": "5",  # the lease: at least 5 + 10 s
    "WEBHOOK_LEASE_SECONDS": "6",
    "WEBHOOK_CONNECT_TIMEOUT_SECONDS": "1",
    "WEBHOOK_READ_TIMEOUT_SECONDS": "4",
    "WEBHOOK_RETRY_BASE_SECONDS": "1",
}


class Beat:
    """Sends the sweep by its task name every half second, as beat does every 10 s."""

    def __init__(self, client: Celery):
        self.client, self.halt = client, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.halt.is_set():
            with contextlib.suppress(Exception):  # the broker may be restarting
                self.client.send_task(SWEEP_TASK)
            self.halt.wait(0.5)

    def __enter__(self) -> Beat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.halt.set()
        self.thread.join(5)


def hint_client(redis_url: str) -> Celery:
    """Sends as the control plane does: ``events.*`` to the webhooks' queue."""
    client = Celery(broker=redis_url)
    client.conf.task_default_queue = django_settings.CELERY_TASK_DEFAULT_QUEUE
    client.conf.task_queues = django_settings.CELERY_TASK_QUEUES
    client.conf.task_routes = django_settings.CELERY_TASK_ROUTES
    return client


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout} s")


def delivered(*ids: int) -> bool:
    return WebhookDelivery.objects.filter(pk__in=ids, state="delivered").count() == len(ids)


@pytest.fixture(autouse=True)
def loopback_receivers(settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = True  # the test process's receiver, as in the workers


def committed_event(tenant, **data) -> WebhookDelivery:
    with transaction.atomic():
        event = emit(EventKind.WORKFLOW_STATE_CHANGED, tenant, tenant=tenant, data=data)
    return WebhookDelivery.objects.get(event=event)


def test_a_worker_killed_mid_delivery_loses_nothing(tmp_path):
    acme = make_tenant("acme")
    redis_port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    redis = redis_process(redis_port, tmp_path / "redis.log")
    env = app_env(redis_url, **HOOK_ENV)
    hints = hint_client(redis_url)
    workers = []
    with Receiver(script=[HOLD]) as receiver:
        try:
            subscription, secret = webhooks.create_subscription(
                WebhookSubscription(tenant=acme, name="siem", url=receiver.url(), kinds=KINDS), CTX
            )
            delivery = committed_event(acme, **{"from": "running", "to": "succeeded"})
            workers.append(worker_process(env, tmp_path / "worker1.log", "w1", concurrency=1))
            hints.send_task(DELIVER_TASK, args=[delivery.pk])
            assert receiver.arrived.wait(60), "the first worker never called the receiver"
            workers[0].kill()  # SIGKILL mid-call: no answer read, nothing recorded

            delivery.refresh_from_db()
            assert delivery.state == "pending" and delivery.attempts == 1
            assert delivery.leased_until is not None and not delivery.log.exists()

            workers.append(worker_process(env, tmp_path / "worker2.log", "w2", concurrency=1))
            with Beat(hints):
                wait_until(lambda: delivered(delivery.pk), 90, "the delivery after the kill")
                time.sleep(2)  # the sweep goes on: nothing is sent again
        finally:
            for worker in workers:
                worker.kill()
            redis.kill()

    assert len(receiver.requests) == 2
    assert {r.delivery for r in receiver.requests} == {str(delivery.pk)}
    assert [r.headers["X-Factory-Attempt"] for r in receiver.requests] == ["1", "2"]
    assert all(signature_ok(secret, r) for r in receiver.requests)
    delivery.refresh_from_db()
    assert delivery.state == "delivered" and delivery.delivered_at is not None
    log = list(delivery.log.values_list("number", "status_code", "error"))
    assert log == [(1, None, webhooks.LOST), (2, 200, "")]
    subscription.refresh_from_db()
    assert subscription.is_active and subscription.consecutive_failures == 0


def test_a_broker_restarted_empty_loses_no_delivery(tmp_path):
    acme = make_tenant("acme")
    redis_port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    redis = redis_process(redis_port, tmp_path / "redis.log")
    env = app_env(redis_url, **HOOK_ENV)
    hints = hint_client(redis_url)
    worker = None
    with Receiver() as receiver:
        try:
            webhooks.create_subscription(
                WebhookSubscription(tenant=acme, name="siem", url=receiver.url(), kinds=KINDS), CTX
            )
            deliveries = [committed_event(acme, n=n) for n in range(3)]
            for delivery in deliveries:  # queued while no worker runs ...
                hints.send_task(DELIVER_TASK, args=[delivery.pk])
            redis.kill()  # ... and gone with the broker
            redis = redis_process(redis_port, tmp_path / "redis.log")
            worker = worker_process(env, tmp_path / "worker.log", "w1")
            time.sleep(3)
            assert receiver.requests == []  # no hint survived
            ids = [d.pk for d in deliveries]
            with Beat(hints):
                wait_until(lambda: delivered(*ids), 90, "the deliveries after the restart")
                time.sleep(2)
        finally:
            if worker:
                worker.kill()
            redis.kill()

    assert sorted(int(r.delivery) for r in receiver.requests) == sorted(ids)  # each once


def test_deliveries_go_to_the_webhook_workers_never_to_the_workflow_workers(tmp_path):
    acme = make_tenant("acme")
    redis_port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    redis = redis_process(redis_port, tmp_path / "redis.log")
    env = app_env(redis_url, **HOOK_ENV)
    hints = hint_client(redis_url)
    workers = []
    with Receiver() as receiver:
        try:
            webhooks.create_subscription(
                WebhookSubscription(tenant=acme, name="siem", url=receiver.url(), kinds=KINDS), CTX
            )
            delivery = committed_event(acme, n=1)
            only_workflows = (django_settings.CELERY_TASK_DEFAULT_QUEUE,)
            workers.append(
                worker_process(env, tmp_path / "flows.log", "flows", queues=only_workflows)
            )
            with Beat(hints):
                time.sleep(4)
                assert receiver.requests == []  # nobody on the workflows' queue took it
                workers.append(
                    worker_process(
                        env,
                        tmp_path / "hooks.log",
                        "hooks",
                        queues=(django_settings.WEBHOOK_QUEUE,),
                    )
                )
                wait_until(lambda: delivered(delivery.pk), 60, "the delivery")
        finally:
            for worker in workers:
                worker.kill()
            redis.kill()
    assert str(delivery.pk) in {r.delivery for r in receiver.requests}
