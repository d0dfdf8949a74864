"""Webhook delivery against a real receiving HTTP server in the test process: signatures,
retries with backoff, a race of two workers, one attempt in flight per subscription, the
attempt's deadline, tenant isolation, disabling after deliveries gave up (with its notice) and
resuming when enabled again, redelivery, what a failure records (never the URL's path, never
the receiver's words), and the destination policy at delivery time."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time

import pytest
import redis
from django.conf import settings as django_settings
from django.core import mail
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from factory.celery import app
from tenants.events import webhooks
from tenants.events.delivery import DELIVER_TASK, SWEEP_TASK
from tenants.events.kinds import EventKind
from tenants.events.models import Event, WebhookDelivery, WebhookSubscription
from tenants.events.services import emit, event_payload
from tenants.models import AuditEvent
from tests.support.events import commit_events
from tests.support.fleet import CTX
from tests.support.processes import free_port
from tests.support.webhooks import DRIP, Receiver, signature_ok

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def hook_settings(settings):
    """Loopback receivers allowed (the test's own); retries due at once; short timeouts."""
    settings.WEBHOOK_ALLOW_LOOPBACK = True
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0
    settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS = 2
    settings.WEBHOOK_READ_TIMEOUT_SECONDS = 2
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 3
    settings.WEBHOOK_MAX_ATTEMPTS = 6
    return settings


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


def subscribe(tenant, url: str, name: str = "siem", **fields) -> tuple[WebhookSubscription, str]:
    """A subscription, without the deliveries of its own ``webhook.created`` event (each test
    counts the deliveries of the events it makes; test_webhooks_api checks those events)."""
    subscription, secret = webhooks.create_subscription(
        WebhookSubscription(tenant=tenant, name=name, url=url, **fields), CTX
    )
    WebhookDelivery.objects.filter(
        event__kind="webhook.created", event__subject_id=str(subscription.pk)
    ).delete()
    return subscription, secret


def happen(tenant, kind=EventKind.WORKFLOW_CREATED, **data) -> Event:
    event = emit(kind, tenant, tenant=tenant, data=data or {"n": 1})
    commit_events()  # numbered, as at COMMIT: only committed events are delivered
    return Event.objects.select_related("tenant").get(pk=event.pk)


def delivery_of(subscription, event) -> WebhookDelivery:
    return WebhookDelivery.objects.get(subscription=subscription, event=event)


def test_a_delivery_is_the_event_signed_with_the_subscriptions_secret(fleet, receiver):
    subscription, secret = subscribe(fleet.alpha, receiver.url())
    event = happen(fleet.alpha, kind=EventKind.WORKFLOW_CREATED, workflow_kind="upgrade")
    delivery = delivery_of(subscription, event)

    assert webhooks.deliver(delivery.pk) == "delivered"

    [got] = receiver.requests
    assert signature_ok(secret, got)
    assert not signature_ok("whsec_someone-else", got)
    assert not signature_ok(secret, type(got)(got.path, got.headers, got.body + b" "))
    assert json.loads(got.body) == event_payload(event)
    assert json.loads(got.body)["id"] == event.sequence  # the event log's id
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-Factory-Event"] == "workflow.created"
    assert got.delivery == str(delivery.pk)
    assert got.headers["X-Factory-Attempt"] == "1"
    assert abs(int(got.headers["X-Factory-Timestamp"]) - time.time()) < 60
    delivery.refresh_from_db()
    assert delivery.state == "delivered" and delivery.delivered_at and delivery.attempts == 1
    [attempt] = delivery.log.all()
    assert attempt.status_code == 200 and attempt.response_excerpt == "ok" and not attempt.error


def test_a_receiver_failing_three_times_gets_the_event_four_times_and_it_is_delivered_once(
    fleet, receiver
):
    receiver.script.extend([500, 502, 503])
    subscription, _ = subscribe(fleet.alpha, receiver.url())
    delivery = delivery_of(subscription, happen(fleet.alpha))

    outcomes = [webhooks.deliver(delivery.pk) for _ in range(4)]
    assert outcomes == ["retry", "retry", "retry", "delivered"]
    assert webhooks.deliver(delivery.pk) == "not-due"  # delivered: never sent again
    assert webhooks.sweep()["due"] == 0

    assert len(receiver.requests) == 4
    assert {r.delivery for r in receiver.requests} == {str(delivery.pk)}  # for de-duplication
    assert [r.headers["X-Factory-Attempt"] for r in receiver.requests] == ["1", "2", "3", "4"]
    delivery.refresh_from_db()
    assert WebhookDelivery.objects.filter(pk=delivery.pk, state="delivered").count() == 1
    assert delivery.attempts == 4 and delivery.delivered_at is not None
    log = list(delivery.log.values_list("number", "status_code"))
    assert log == [(1, 500), (2, 502), (3, 503), (4, 200)]
    assert "answered 500" in delivery.log.get(number=1).error
    subscription.refresh_from_db()
    assert subscription.is_active and subscription.consecutive_failures == 0


def test_a_retry_waits_for_its_backoff_and_the_sweep_sends_it_then(fleet, receiver, settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 10
    receiver.script.append((503, {"Retry-After": "30"}))
    subscription, _ = subscribe(fleet.alpha, receiver.url())
    delivery = delivery_of(subscription, happen(fleet.alpha))

    assert webhooks.deliver(delivery.pk) == "retry"
    delivery.refresh_from_db()
    wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
    assert 28 < wait <= 30  # Retry-After (30 s) outweighs the first backoff (10 s ± 20 %)
    assert webhooks.deliver(delivery.pk) == "not-due"
    assert webhooks.sweep()["due"] == 0
    later = timezone.now() + dt.timedelta(seconds=31)
    assert webhooks.sweep(now=later) == {"due": 1, "hinted": 1, "lease_expired": 0}
    assert len(receiver.requests) == 1


def test_two_workers_racing_record_the_delivery_once(fleet, receiver):
    subscription, _ = subscribe(fleet.alpha, receiver.url())
    delivery = delivery_of(subscription, happen(fleet.alpha))

    slow = webhooks.claim(delivery.pk)
    assert slow is not None and webhooks.claim(delivery.pk) is None  # leased: not due
    # The slow worker's lease runs out before it is done; another worker claims the delivery.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        leased_until=timezone.now() - dt.timedelta(seconds=1)
    )
    fast = webhooks.claim(delivery.pk)
    assert fast is not None and fast.number == 2 and fast.token != slow.token
    lost = delivery.log.get(number=1)
    assert lost.status_code is None and "lost" in lost.error  # written by the second claim

    assert webhooks.record(fast, webhooks.call(fast)) == "delivered"
    delivered_at = WebhookDelivery.objects.get(pk=delivery.pk).delivered_at
    assert webhooks.record(slow, webhooks.call(slow)) == "already-delivered"

    delivery.refresh_from_db()
    assert delivery.state == "delivered" and delivery.delivered_at == delivered_at
    assert list(delivery.log.values_list("number", "status_code")) == [(1, 200), (2, 200)]
    assert [r.delivery for r in receiver.requests] == [str(delivery.pk)] * 2


def test_a_failure_reported_after_the_lease_was_taken_over_leaves_the_outcome_to_the_holder(
    fleet, receiver
):
    receiver.script.append(500)
    subscription, _ = subscribe(fleet.alpha, receiver.url())
    delivery = delivery_of(subscription, happen(fleet.alpha))
    slow = webhooks.claim(delivery.pk)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        leased_until=timezone.now() - dt.timedelta(seconds=1)
    )
    holder = webhooks.claim(delivery.pk)
    assert webhooks.record(slow, webhooks.call(slow)) == "superseded"
    delivery.refresh_from_db()
    assert delivery.state == "pending" and delivery.lease_token == holder.token
    assert webhooks.record(holder, webhooks.call(holder)) == "delivered"


def test_another_tenants_events_never_reach_a_subscription(fleet):
    with Receiver() as alpha_hook, Receiver() as beta_hook:
        alpha_sub, _ = subscribe(fleet.alpha, alpha_hook.url())
        beta_sub, _ = subscribe(fleet.beta, beta_hook.url())
        for kind in EventKind:
            happen(fleet.alpha, kind=kind)
        provider_wide = emit(EventKind.FAULT_OPENED, fleet.alpha, tenant=None)
        commit_events()
        assert not provider_wide.deliveries.exists()
        assert not WebhookDelivery.objects.filter(subscription=beta_sub).exists()
        for pk in WebhookDelivery.objects.values_list("pk", flat=True):
            assert webhooks.deliver(pk) == "delivered"
        assert len(alpha_hook.requests) == len(EventKind)
        assert all(json.loads(r.body)["tenant"] == "alpha" for r in alpha_hook.requests)
        assert beta_hook.requests == []
        assert alpha_sub.deliveries.count() == len(EventKind)


def test_a_short_outage_retried_in_time_disables_nothing(fleet, receiver):
    """Ten events, each refused once (a receiver restarting): ten retries, no disabling, and
    every event arrives."""
    receiver.script.extend([502] * 10)
    subscription, _ = subscribe(fleet.alpha, receiver.url())
    deliveries = [delivery_of(subscription, happen(fleet.alpha, n=n)) for n in range(10)]
    assert [webhooks.deliver(d.pk) for d in deliveries] == ["retry"] * 10
    subscription.refresh_from_db()
    assert subscription.is_active and subscription.consecutive_failures == 0
    assert [webhooks.deliver(d.pk) for d in deliveries] == ["delivered"] * 10
    assert not Event.objects.filter(kind="webhook.disabled").exists() and not mail.outbox
    assert len({r.delivery for r in receiver.requests}) == 10


def test_a_delivery_that_gives_up_counts_and_a_success_resets_the_count(fleet, receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    receiver.script.extend([500, 500])
    subscription, _ = subscribe(fleet.alpha, receiver.url())
    delivery = delivery_of(subscription, happen(fleet.alpha))
    assert webhooks.deliver(delivery.pk) == "retry"
    subscription.refresh_from_db()
    assert subscription.consecutive_failures == 0  # a failed attempt is not a failed delivery
    assert webhooks.deliver(delivery.pk) == "failed"
    assert webhooks.deliver(delivery.pk) == "not-due"
    delivery.refresh_from_db()
    subscription.refresh_from_db()
    assert delivery.state == "failed" and delivery.delivered_at is None
    assert subscription.is_active and subscription.consecutive_failures == 1  # 1 of 3
    assert webhooks.deliver(delivery_of(subscription, happen(fleet.alpha)).pk) == "delivered"
    subscription.refresh_from_db()
    assert subscription.consecutive_failures == 0 and not mail.outbox


def test_a_subscription_is_disabled_after_deliveries_gave_up_and_resumes_when_enabled(
    fleet, receiver, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_MAX_ATTEMPTS = 2  # WEBHOOK_DISABLE_AFTER_FAILURES = 3 (the fixture)
    receiver.default = 500
    failing, secret = subscribe(fleet.alpha, receiver.url(), name="failing")
    with Receiver() as other:
        watcher, watcher_secret = subscribe(
            fleet.alpha, other.url(), name="watcher", kinds=["webhook.disabled"]
        )
        first, second, third, held = [
            delivery_of(failing, happen(fleet.alpha, n=n)) for n in range(4)
        ]
        for delivery in (first, second):
            assert [webhooks.deliver(delivery.pk) for _ in range(2)] == ["retry", "failed"]
        assert webhooks.deliver(held.pk) == "retry"  # waiting for its second attempt
        failing.refresh_from_db()
        assert failing.is_active and failing.consecutive_failures == 2

        with django_capture_on_commit_callbacks(execute=True):
            assert [webhooks.deliver(third.pk) for _ in range(2)] == ["retry", "failed"]

        failing.refresh_from_db()
        assert not failing.is_active and failing.disabled_at is not None
        assert failing.consecutive_failures == 3
        assert failing.disabled_reason.startswith("3 consecutive deliveries gave up")
        assert f"the last, {third.pk}, after 2 attempts" in failing.disabled_reason
        # The notice: an event in the tenant's log, an audit event, an email.
        disabled = Event.objects.get(kind="webhook.disabled")
        assert disabled.tenant_id == fleet.alpha.pk
        assert disabled.subject_id == str(failing.pk) and disabled.subject_name == "failing"
        assert disabled.data["consecutive_failures"] == 3
        assert disabled.data["destination"] == f"http://127.0.0.1:{receiver.port}/…"
        audit = AuditEvent.objects.filter(
            object_type="events.webhooksubscription", object_id=str(failing.pk), source="system"
        ).latest("id")
        assert audit.before["is_active"] is True and audit.after["is_active"] is False
        assert secret not in json.dumps([audit.before, audit.after])
        [notice] = mail.outbox
        assert notice.to == ["ops@alpha.example"]
        assert "failing" in notice.subject and "is_active" in notice.body
        assert "/hook" not in notice.body  # only scheme and host: a path may carry a token
        assert "pending deliveries wait" in notice.body

        # Its other subscription is told, through a delivery of its own.
        commit_events()
        told = delivery_of(watcher, disabled)
        assert webhooks.deliver(told.pk) == "delivered"
        [got] = other.requests
        assert signature_ok(watcher_secret, got)
        assert json.loads(got.body)["kind"] == "webhook.disabled"

    # Disabled: nothing is sent; what waits stays pending; new events are not queued for it.
    WebhookDelivery.objects.filter(pk=held.pk).update(next_attempt_at=timezone.now())
    assert webhooks.deliver(held.pk) == "not-due"
    assert WebhookDelivery.objects.get(pk=held.pk).state == "pending"
    assert webhooks.sweep()["hinted"] == 0
    happen(fleet.alpha)
    assert failing.deliveries.count() == 4
    sent = len(receiver.requests)

    # Enabled again by the tenant: the count starts over and the waiting delivery goes out.
    receiver.default = 200
    WebhookDelivery.objects.filter(pk=held.pk).update(
        next_attempt_at=timezone.now() + dt.timedelta(hours=6)  # its backoff, had it run on
    )
    enabled = fleet.client("alpha_operator").patch(
        f"/api/v1/webhooks/{failing.pk}/", {"is_active": True}, format="json"
    )
    assert enabled.status_code == 200, enabled.content
    body = enabled.json()
    assert body["is_active"] and body["consecutive_failures"] == 0
    assert body["disabled_at"] is None and body["disabled_reason"] == ""
    assert WebhookDelivery.objects.get(pk=held.pk).next_attempt_at <= timezone.now()
    assert webhooks.deliver(held.pk) == "delivered"
    assert len(receiver.requests) == sent + 1
    gave_up = WebhookDelivery.objects.filter(pk__in=[first.pk, second.pk, third.pk])
    assert set(gave_up.values_list("state", flat=True)) == {"failed"}  # redeliver/ sends them


SECRET_PATH = "/services/T0/B0/SECRETTOKEN?sig=abc"


def test_a_secret_path_is_never_written_down_nor_shown_to_readers(
    fleet, settings, django_capture_on_commit_callbacks
):
    """A Slack- or Teams-style URL carries its credential in the path: it appears in no error,
    no disabled reason, no event, no email, no audit entry, and no reader's view."""
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 1
    base = f"http://127.0.0.1:{free_port()}"  # nothing listens: refused
    url = base + SECRET_PATH
    operator = fleet.client("alpha_operator")
    with django_capture_on_commit_callbacks(execute=True):
        created = operator.post("/api/v1/webhooks/", {"name": "slack", "url": url}, format="json")
        assert created.status_code == 201, created.content
        assert created.json()["url"] == url  # its writer sees it whole
        subscription = WebhookSubscription.objects.get(pk=created.json()["id"])
        delivery = delivery_of(subscription, happen(fleet.alpha))
        assert webhooks.deliver(delivery.pk) == "failed"
    delivery.refresh_from_db()
    subscription.refresh_from_db()
    assert not subscription.is_active
    attempt = delivery.log.get()
    assert attempt.error == f"refused: the connection was refused ({base}/…)"
    written = [
        delivery.last_error,
        attempt.error,
        subscription.disabled_reason,
        json.dumps(list(Event.objects.values("kind", "subject_name", "data"))),
        json.dumps(list(AuditEvent.objects.values("object_repr", "before", "after"))),
        *(m.body + m.subject for m in mail.outbox),
    ]
    assert len(mail.outbox) == 1 and Event.objects.filter(kind="webhook.disabled").exists()
    for text in written:
        assert "SECRETTOKEN" not in text and "/services" not in text, text
    for who in ("alpha_viewer", "provider_admin"):
        client = fleet.client(who)
        shown = [
            client.get(f"/api/v1/webhooks/{subscription.pk}/"),
            client.get("/api/v1/webhooks/"),
            client.get("/api/v1/webhook-deliveries/"),
            client.get(f"/api/v1/webhooks/{subscription.pk}/deliveries/"),
            client.get("/api/v1/events/"),
        ]
        for response in shown:
            assert response.status_code == 200, (who, response.content)
            assert "SECRETTOKEN" not in response.content.decode(), who
        assert shown[0].json()["url"] == f"{base}/…"
        # Nor can a reader find the path by searching for it.
        assert client.get("/api/v1/webhooks/", {"q": "SECRETTOKEN"}).json()["results"] == []
    assert operator.get(f"/api/v1/webhooks/{subscription.pk}/").json()["url"] == url


def test_a_non_2xx_answer_is_not_recorded_only_its_status(fleet):
    """Whatever a destination says when it refuses (a service's banner, an error page) is not
    kept for the tenant to read; a 2xx answer's start is."""
    with Receiver(script=[503], reply=b"internal: db password hunter2") as receiver:
        subscription, _ = subscribe(fleet.alpha, receiver.url())
        delivery = delivery_of(subscription, happen(fleet.alpha))
        assert webhooks.deliver(delivery.pk) == "retry"
        receiver.reply = b"accepted 42"
        assert webhooks.deliver(delivery.pk) == "delivered"
    failed, ok = delivery.log.order_by("number")
    assert (failed.status_code, failed.response_excerpt) == (503, "")
    assert "hunter2" not in failed.error and failed.error == "the receiver answered 503"
    assert (ok.status_code, ok.response_excerpt) == (200, "accepted 42")


def test_the_control_planes_own_services_are_never_called(fleet, settings):
    """The test database and Redis listen on loopback, which the tests allow: their ports are
    refused anyway, when saved and when called."""
    database_port = int(settings.DATABASES["default"]["PORT"] or 5432)
    redis_port = int(settings.REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    admin = fleet.client("alpha_admin")
    for port in (database_port, redis_port):
        refused = admin.post(
            "/api/v1/webhooks/", {"name": "x", "url": f"http://127.0.0.1:{port}/"}, format="json"
        )
        assert refused.status_code == 400, refused.content
        assert refused.json()["errors"][0]["code"] == "destination_refused"
        assert "control plane" in refused.json()["errors"][0]["message"]
    # Written past the model's checks (or saved before the service moved there): refused at
    # the call, with nothing of the service's answer.
    inward = WebhookSubscription.objects.create(
        tenant=fleet.alpha, name="inward", url=f"http://localhost:{redis_port}/", secret="s"
    )
    delivery = delivery_of(inward, happen(fleet.alpha))
    assert webhooks.deliver(delivery.pk) == "retry"
    attempt = delivery.log.get()
    assert attempt.status_code is None and attempt.response_excerpt == ""
    assert attempt.error.startswith("destination_refused: ")
    assert "control plane's own services" in attempt.error


def test_at_most_one_attempt_per_subscription_is_in_flight(fleet, receiver):
    subscription, _ = subscribe(fleet.alpha, receiver.url())
    with Receiver() as other_receiver:
        other, _ = subscribe(fleet.alpha, other_receiver.url(), name="other")
        first, second = (happen(fleet.alpha, n=n) for n in range(2))
        one, two = delivery_of(subscription, first), delivery_of(subscription, second)

        in_flight = webhooks.claim(one.pk)
        assert in_flight is not None
        assert webhooks._claim(two.pk) == "busy" and webhooks.claim(two.pk) is None
        assert webhooks.deliver(two.pk) == "busy"
        # Another subscription's deliveries are not held up.
        assert webhooks.deliver(delivery_of(other, first).pk) == "delivered"
        sweep = webhooks.sweep()
        assert sweep["hinted"] == 1 and sweep["due"] == 1  # other's second; not the busy one

        assert webhooks.record(in_flight, webhooks.call(in_flight)) == "delivered"
        assert webhooks.hint_next(subscription.pk) == two.pk  # what deliver() does after
        assert webhooks.deliver(two.pk) == "delivered"
    # A lease that ran out (its worker is gone) does not hold the subscription.
    third = delivery_of(subscription, happen(fleet.alpha, n=3))
    fourth = delivery_of(subscription, happen(fleet.alpha, n=4))
    assert webhooks.claim(third.pk) is not None
    WebhookDelivery.objects.filter(pk=third.pk).update(
        leased_until=timezone.now() - dt.timedelta(seconds=1)
    )
    assert webhooks.deliver(fourth.pk) == "delivered"


def test_an_attempt_ends_at_its_deadline_however_slowly_the_receiver_answers(
    fleet, receiver, settings
):
    """A byte every half second never trips the 2 s read timeout; the 2 s deadline ends the
    attempt all the same, and the lease outlasts the deadline."""
    settings.WEBHOOK_ATTEMPT_DEADLINE_SECONDS = 2
    settings.WEBHOOK_LEASE_SECONDS = 1
    assert webhooks.lease_seconds() >= 2 + webhooks.LEASE_MARGIN_SECONDS
    receiver.script.append(DRIP)
    subscription, _ = subscribe(fleet.alpha, receiver.url())
    delivery = delivery_of(subscription, happen(fleet.alpha))
    claimed = webhooks.claim(delivery.pk)
    lease = WebhookDelivery.objects.get(pk=delivery.pk).leased_until - timezone.now()
    assert lease.total_seconds() > 2 + webhooks.LEASE_MARGIN_SECONDS - 1
    started = time.monotonic()
    outcome = webhooks.call(claimed)
    took = time.monotonic() - started
    assert 1.8 < took < 3.5, took
    assert outcome.status_code is None and outcome.error.startswith("too_slow: ")
    assert "2 s" in outcome.error
    assert receiver.dripped.wait(5)  # the receiver saw the connection go
    assert webhooks.record(claimed, outcome) == "retry"


def test_an_unreachable_receiver_and_a_redirect_are_failed_attempts(fleet, receiver):
    closed, _ = subscribe(fleet.alpha, f"http://127.0.0.1:{free_port()}/hook", name="closed")
    receiver.script.append((302, {"Location": "http://169.254.169.254/"}))
    moved, _ = subscribe(fleet.alpha, receiver.url(), name="moved")
    event = happen(fleet.alpha)
    assert webhooks.deliver(delivery_of(closed, event).pk) == "retry"
    assert webhooks.deliver(delivery_of(moved, event).pk) == "retry"
    refused = delivery_of(closed, event).log.get()
    assert refused.status_code is None and refused.error.startswith("refused: ")
    assert "/hook" not in refused.error  # the host only
    redirect = delivery_of(moved, event).log.get()
    assert redirect.status_code == 302 and "redirects are not followed" in redirect.error
    assert len(receiver.requests) == 1  # nobody followed the redirect


def test_a_destination_is_checked_again_when_it_is_called(fleet, receiver, settings):
    """A URL whose host name resolves to a refused address: checked at each call (the
    subscription was written directly, past the model's checks)."""
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    subscription = WebhookSubscription.objects.create(
        tenant=fleet.alpha, name="inward", url=f"http://localhost:{receiver.port}/", secret="s"
    )
    delivery = delivery_of(subscription, happen(fleet.alpha))
    assert webhooks.deliver(delivery.pk) == "retry"
    attempt = delivery.log.get()
    assert attempt.status_code is None
    assert attempt.error.startswith("destination_refused: ") and "loopback" in attempt.error
    assert "127.0.0.1" not in attempt.error  # what the name resolved to is not told
    assert receiver.requests == []


def test_https_goes_to_the_checked_address_and_verifies_the_certificate_by_name(
    fleet, tmp_path, settings
):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    settings.WEBHOOK_CA_BUNDLE = str(cert)
    with Receiver().use_tls(cert, key) as tls:
        by_name, secret = subscribe(fleet.alpha, tls.url(host="localhost"), name="by-name")
        by_address, _ = subscribe(fleet.alpha, tls.url(host="127.0.0.1"), name="by-address")
        event = happen(fleet.alpha)
        assert webhooks.deliver(delivery_of(by_name, event).pk) == "delivered"
        [got] = tls.requests
        assert signature_ok(secret, got) and got.headers["Host"] == f"localhost:{tls.port}"
        # The certificate names localhost, not 127.0.0.1: the name is what is verified.
        assert webhooks.deliver(delivery_of(by_address, event).pk) == "retry"
        assert delivery_of(by_address, event).log.get().error.startswith("tls: ")


def test_redelivery_sends_the_same_delivery_again_and_keeps_its_log(fleet, receiver):
    subscription, _ = subscribe(fleet.alpha, receiver.url())
    delivery = delivery_of(subscription, happen(fleet.alpha))
    assert webhooks.deliver(delivery.pk) == "delivered"
    first_delivered_at = WebhookDelivery.objects.get(pk=delivery.pk).delivered_at
    url = f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver/"

    assert fleet.client("alpha_viewer").post(url).status_code == 403
    assert fleet.client("provider_admin").post(url).status_code == 403
    assert fleet.client("beta_admin").post(url).status_code == 404
    queued = fleet.client("alpha_operator").post(url)
    assert queued.status_code == 202, queued.content
    assert queued.json()["state"] == "pending" and len(queued.json()["log"]) == 1

    assert webhooks.deliver(delivery.pk) == "delivered"
    delivery.refresh_from_db()
    assert delivery.delivered_at == first_delivered_at  # written once
    assert list(delivery.log.values_list("number", "status_code")) == [(1, 200), (2, 200)]
    assert [r.delivery for r in receiver.requests] == [str(delivery.pk)] * 2
    assert AuditEvent.objects.filter(
        object_type="events.webhookdelivery", object_id=str(delivery.pk), source="api"
    ).exists()


def test_redelivery_is_refused_in_flight_and_for_a_disabled_subscription(fleet, receiver):
    subscription, _ = subscribe(fleet.alpha, receiver.url())
    delivery = delivery_of(subscription, happen(fleet.alpha))
    admin = fleet.client("alpha_admin")
    url = f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver/"
    claimed = webhooks.claim(delivery.pk)
    assert claimed is not None
    busy = admin.post(url)
    assert busy.status_code == 409 and busy.json()["code"] == "in_flight"
    assert admin.get(f"/api/v1/webhook-deliveries/{delivery.pk}/").json()["in_flight"] is True
    admin.patch(f"/api/v1/webhooks/{subscription.pk}/", {"is_active": False}, format="json")
    WebhookDelivery.objects.filter(pk=delivery.pk).update(leased_until=None)
    off = admin.post(url)
    assert off.status_code == 409 and off.json()["errors"][0]["field"] == "subscription"
    subscription.refresh_from_db()
    assert subscription.disabled_reason == "disabled by alpha-admin"


def test_emit_hints_a_worker_after_the_commit(fleet, receiver, django_capture_on_commit_callbacks):
    subscription, _ = subscribe(fleet.alpha, receiver.url())
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    queue = django_settings.WEBHOOK_QUEUE  # its own queue, not the workflows'
    workflows = django_settings.CELERY_TASK_DEFAULT_QUEUE
    before, workflows_before = client.llen(queue), client.llen(workflows)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        happen(fleet.alpha)
    assert client.llen(queue) == before  # nothing before the commit
    for callback in callbacks:
        callback()
    assert client.llen(queue) == before + 1
    assert client.llen(workflows) == workflows_before
    message = json.loads(client.lindex(queue, 0))
    assert message["headers"]["task"] == DELIVER_TASK
    assert json.loads(message["headers"]["argsrepr"].replace("'", '"')) == [
        subscription.deliveries.get().pk
    ]
    client.close()


def test_the_tasks_are_registered_and_the_sweep_is_scheduled():
    app.loader.import_default_modules()
    assert {DELIVER_TASK, SWEEP_TASK} <= set(app.tasks)
    assert PeriodicTask.objects.get(name="webhook sweep").task == SWEEP_TASK
