"""The webhook API: only a tenant's own people point its events somewhere (never anyone at the
provider, whatever memberships they gave themselves); each change is an event in the tenant's
log naming the destination's host only; the secret is shown once; the URL whole only to its
writers; other tenants' subscriptions and deliveries are 404; bad input is a 400 naming the
field; the delivery log lists each attempt."""

from __future__ import annotations

import ipaddress
import json

import pytest

from tenants.choices import Role
from tenants.events import destinations, webhooks
from tenants.events.kinds import EventKind
from tenants.events.models import Event, WebhookDelivery, WebhookSubscription
from tenants.events.services import emit
from tenants.models import AuditEvent, Membership
from tenants.services.changes import save_object
from tests.support.api import assert_error_body
from tests.support.events import commit_events
from tests.support.fleet import CTX, client_for, make_person
from tests.support.schema import assert_conforms
from tests.support.webhooks import Receiver, signature_ok

pytestmark = pytest.mark.django_db
WEBHOOKS = "/api/v1/webhooks/"


@pytest.fixture(autouse=True)
def hook_settings(settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = True
    settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS = 2
    settings.WEBHOOK_READ_TIMEOUT_SECONDS = 2
    return settings


def create(client, **body):
    body = {"name": "siem", "url": "https://siem.alpha.example/hooks", **body}
    return client.post(WEBHOOKS, body, format="json")


def test_the_secret_is_shown_at_creation_and_at_rotation_only(fleet):
    admin = fleet.client("alpha_admin")
    created = create(admin, kinds=["fault.opened", "workflow.state_changed"])
    assert created.status_code == 201, created.content
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert body["tenant"] == fleet.alpha.pk  # a person of one tenant need not name it
    assert body["is_active"] and body["consecutive_failures"] == 0
    assert created["Location"].endswith(f"{WEBHOOKS}{body['id']}/")
    assert created["Cache-Control"] == "no-store" and created["ETag"]
    assert_conforms(created, "post")
    detail = f"{WEBHOOKS}{body['id']}/"

    shown = [
        admin.get(detail),
        admin.get(WEBHOOKS),
        admin.patch(detail, {"name": "siem-2"}, format="json"),
        fleet.client("provider_admin").get(detail),
    ]
    for response in shown:
        assert response.status_code == 200, response.content
        assert secret not in response.content.decode()
        assert "secret" not in json.dumps(response.json()).replace("secret_rotated_at", "")
    assert_error_body(admin.get(detail, {"fields": "id,secret"}), 400)
    assert shown[0]["ETag"] == created["ETag"]  # the same representation, secret aside

    rotated = admin.post(f"{detail}rotate-secret/")
    assert rotated.status_code == 200, rotated.content
    assert rotated["Cache-Control"] == "no-store"
    new_secret = rotated.json()["secret"]
    assert new_secret != secret and rotated.json()["secret_rotated_at"]
    assert WebhookSubscription.objects.get(pk=body["id"]).secret == new_secret
    assert_conforms(rotated, "post")
    assert fleet.client("alpha_viewer").post(f"{detail}rotate-secret/").status_code == 403

    trail = AuditEvent.objects.filter(
        object_type="events.webhooksubscription", object_id=str(body["id"])
    )
    assert list(trail.values_list("action", flat=True).order_by("id")) == [
        "create",
        "update",
        "update",
    ]
    everything = json.dumps(list(trail.values("before", "after")))
    assert secret not in everything and new_secret not in everything


def test_deliveries_after_a_rotation_are_signed_with_the_new_secret(fleet):
    admin = fleet.client("alpha_admin")
    with Receiver() as receiver:
        body = create(admin, url=receiver.url()).json()
        new_secret = admin.post(f"{WEBHOOKS}{body['id']}/rotate-secret/").json()["secret"]
        emit(EventKind.WORKFLOW_CREATED, fleet.alpha, tenant=fleet.alpha)
        commit_events()
        delivery = WebhookDelivery.objects.get(event__kind="workflow.created")
        assert webhooks.deliver(delivery.pk) == "delivered"
        [got] = receiver.requests
        assert signature_ok(new_secret, got) and not signature_ok(body["secret"], got)


def test_only_the_tenants_own_people_create_and_change_its_subscriptions(fleet):
    """Sovereignty: a subscription sends the tenant's data out; the provider reads, never
    points it elsewhere."""
    mine = create(fleet.client("alpha_operator")).json()
    detail = f"{WEBHOOKS}{mine['id']}/"
    for who in ("provider_admin", "technician", "alpha_viewer", "beta_admin"):
        refused = create(fleet.client(who), name=f"by-{who}", tenant=fleet.alpha.pk)
        assert refused.status_code in (400, 403), (who, refused.content)
        assert not WebhookSubscription.objects.filter(name=f"by-{who}").exists()
    assert create(fleet.client("provider_admin")).status_code == 403
    assert create(fleet.client("alpha_viewer")).status_code == 403
    assert fleet.client("technician").get(WEBHOOKS).status_code == 403  # not a reader
    # Beta's admin cannot name alpha: alpha is not there for it.
    foreign = assert_error_body(create(fleet.client("beta_admin"), tenant=fleet.alpha.pk), 400)
    assert foreign["errors"][0]["field"] == "tenant"

    provider = fleet.client("provider_admin")
    assert provider.get(detail).status_code == 200
    assert mine["id"] in [s["id"] for s in provider.get(WEBHOOKS).json()["results"]]
    assert (
        provider.patch(detail, {"url": "https://evil.example/"}, format="json").status_code == 403
    )
    assert provider.delete(detail).status_code == 403
    assert provider.post(f"{detail}rotate-secret/").status_code == 403
    assert fleet.client("alpha_viewer").get(detail).status_code == 200
    assert fleet.client("alpha_viewer").delete(detail).status_code == 403
    assert WebhookSubscription.objects.get(pk=mine["id"]).url == "https://siem.alpha.example/hooks"


def test_nobody_at_the_provider_writes_a_webhook_whatever_memberships_they_hold(fleet):
    """Provider staff could give themselves a tenant-admin membership in the Django admin:
    every webhook write is refused all the same, by its own rule."""
    mine = create(fleet.client("alpha_admin")).json()
    detail = f"{WEBHOOKS}{mine['id']}/"
    emit(EventKind.FAULT_OPENED, fleet.alpha, tenant=fleet.alpha)
    commit_events()
    delivery = WebhookDelivery.objects.get(event__kind="fault.opened")
    padmin = fleet.people["provider_admin"]
    save_object(Membership(user=padmin, tenant=fleet.alpha, role=Role.TENANT_ADMIN), CTX)
    staff = make_person("staffer", Role.TENANT_ADMIN, fleet.alpha, is_staff=True)
    root = make_person("root", Role.TENANT_ADMIN, fleet.alpha, is_superuser=True)
    for who in (padmin, staff, root):
        client = client_for(who)
        for response in (
            create(client, name=f"by-{who.username}"),
            client.patch(detail, {"url": "https://evil.example/x"}, format="json"),
            client.put(detail, {**mine, "url": "https://evil.example/x"}, format="json"),
            client.delete(detail),
            client.post(f"{detail}rotate-secret/"),
            client.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver/"),
        ):
            refused = assert_error_body(response, 403)
            assert refused["code"] == "tenant_people_only", (who.username, refused)
        assert client.get(detail).status_code == 200  # reading is support's job
        assert client.get(detail).json()["url"] == "https://siem.alpha.example/…"
    stored = WebhookSubscription.objects.get(pk=mine["id"])
    assert stored.url == "https://siem.alpha.example/hooks"
    assert WebhookSubscription.objects.count() == 1
    assert (
        not Event.objects.filter(kind__startswith="webhook.")
        .exclude(kind="webhook.created")
        .exists()
    )


def test_every_change_of_a_subscription_is_an_event_naming_its_host_only(fleet):
    admin = fleet.client("alpha_admin")
    secret_url = "https://hooks.alpha.example/services/T0/B0/SECRETTOKEN"
    created = create(admin, url=secret_url, kinds=["fault.opened"]).json()
    detail = f"{WEBHOOKS}{created['id']}/"
    assert admin.patch(detail, {"name": "siem-2"}, format="json").status_code == 200
    assert admin.patch(detail, {"name": "siem-2"}, format="json").status_code == 200  # no change
    moved = admin.patch(detail, {"url": "https://other.alpha.example/in?token=t0p"}, format="json")
    assert moved.status_code == 200
    assert admin.post(f"{detail}rotate-secret/").status_code == 200
    assert admin.delete(detail).status_code == 204
    commit_events()
    log = fleet.client("alpha_viewer").get(
        "/api/v1/events/",
        {
            "kind__in": ",".join(
                ["webhook.created", "webhook.updated", "webhook.secret_rotated", "webhook.deleted"]
            )
        },
    )
    assert log.status_code == 200, log.content
    events = log.json()["results"]
    assert [e["kind"] for e in events] == [
        "webhook.created",
        "webhook.updated",
        "webhook.updated",
        "webhook.secret_rotated",
        "webhook.deleted",
    ]
    assert {e["subject"]["id"] for e in events} == {str(created["id"])}
    assert all(e["data"]["by"] == "alpha-admin" for e in events)
    assert events[0]["data"] == {
        "destination": "https://hooks.alpha.example/…",
        "by": "alpha-admin",
        "kinds": ["fault.opened"],
        "is_active": True,
    }
    assert events[1]["data"]["changed"] == ["name"]
    assert events[2]["data"]["changed"] == ["url"]
    assert events[2]["data"]["previous_destination"] == "https://hooks.alpha.example/…"
    assert events[2]["data"]["destination"] == "https://other.alpha.example/…"
    assert events[4]["data"]["destination"] == "https://other.alpha.example/…"
    everything = json.dumps(events) + json.dumps(
        list(
            AuditEvent.objects.filter(object_type="events.webhooksubscription").values(
                "before", "after"
            )
        )
    )
    assert "SECRETTOKEN" not in everything and "t0p" not in everything
    # The URL's change is still an audited change (its fingerprint differs), path unwritten.
    updates = AuditEvent.objects.filter(object_type="events.webhooksubscription", action="update")
    moves = [u for u in updates if u.before["url"] != u.after["url"]]
    assert len(moves) == 1 and moves[0].after["url"].startswith("https://other.alpha.example/… ")


def test_the_url_is_whole_only_for_those_who_may_change_the_subscription(fleet):
    mine = create(fleet.client("alpha_admin"), url="https://siem.alpha.example/in?token=t0p")
    detail = f"{WEBHOOKS}{mine.json()['id']}/"
    whole, cut = "https://siem.alpha.example/in?token=t0p", "https://siem.alpha.example/…"
    for who, scope, expected in (
        ("alpha_admin", "write", whole),
        ("alpha_operator", "write", whole),
        ("alpha_operator", "read", cut),  # a read-only token may not write
        ("alpha_viewer", "write", cut),
        ("provider_admin", "write", cut),
    ):
        client = fleet.client(who, scope)
        assert client.get(detail).json()["url"] == expected, (who, scope)
        assert [s["url"] for s in client.get(WEBHOOKS).json()["results"]] == [expected]
        assert client.get(detail, {"brief": "true"}).json()["url"] == expected


def test_another_tenants_subscriptions_and_deliveries_are_not_there(fleet):
    mine = create(fleet.client("alpha_admin")).json()
    emit(EventKind.FAULT_OPENED, fleet.alpha, tenant=fleet.alpha)
    commit_events()
    delivery = WebhookDelivery.objects.get(event__kind="fault.opened")
    beta = fleet.client("beta_admin")
    detail = f"{WEBHOOKS}{mine['id']}/"
    for response in (
        beta.get(detail),
        beta.patch(detail, {"name": "x"}, format="json"),
        beta.delete(detail),
        beta.post(f"{detail}rotate-secret/"),
        beta.get(f"{detail}deliveries/"),
        beta.get(f"/api/v1/webhook-deliveries/{delivery.pk}/"),
        beta.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver/"),
    ):
        assert_error_body(response, 404)
    assert beta.get(WEBHOOKS).json()["results"] == []
    assert beta.get("/api/v1/webhook-deliveries/").json()["results"] == []
    assert WebhookSubscription.objects.get(pk=mine["id"]).name == "siem"


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"url": "ftp://files.alpha.example/"}, "url", "scheme"),
        ({"url": "https://user:pw@siem.alpha.example/"}, "url", "credentials"),
        ({"url": "http://169.254.169.254/latest/meta-data/"}, "url", "destination_refused"),
        ({"url": "http://[fe80::1]/"}, "url", "destination_refused"),
        ({"url": "http://224.0.0.1/"}, "url", "destination_refused"),
        ({"url": "not a url"}, "url", "invalid"),
        ({"kinds": ["fault.exploded"]}, "kinds", None),
        ({"kinds": ["fault.opened", "fault.opened"]}, "kinds", "invalid_kind"),
        ({"kinds": "fault.opened"}, "kinds", None),
        ({"name": ""}, "name", "blank"),
        ({"is_active": "maybe"}, "is_active", "invalid"),
        ({"tenant": 2**70}, "tenant", None),
        ({"tenant": "alpha"}, "tenant", None),
        ({"url": "http://[::1/"}, "url", None),
        ({"url": "https://" + "a" * 600 + ".example/"}, "url", None),
        ({"name": "x" * 101}, "name", "max_length"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(fleet, body, field, code):
    refused = assert_error_body(create(fleet.client("alpha_admin"), **body), 400)
    assert refused["errors"][0]["field"].split(".")[0] == field, refused
    if code:
        assert refused["errors"][0]["code"] == code, refused
    assert not WebhookSubscription.objects.exists()


def test_loopback_is_refused_unless_the_setting_allows_it(fleet, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    admin = fleet.client("alpha_admin")
    for url in (
        "http://127.0.0.1:8080/",
        "http://localhost/",
        "http://[::1]/",
        "http://x.localhost/",
    ):
        refused = assert_error_body(create(admin, url=url), 400)
        assert refused["errors"][0] == {
            "field": "url",
            "code": "destination_refused",
            "message": refused["errors"][0]["message"],
        }
        assert "loopback" in refused["errors"][0]["message"]
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    assert create(admin, url="http://10.1.2.3/").status_code == 400
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_DENIED_NETWORKS = ["10.1.0.0/16"]
    denied = assert_error_body(create(admin, url="http://10.1.2.3/"), 400)
    assert "denied network 10.1.0.0/16" in denied["errors"][0]["message"]
    assert create(admin, url="http://10.2.0.1/").status_code == 201  # on the customer's premises


def test_the_deployments_own_services_are_refused_by_name_and_by_address(fleet, settings):
    """Found from the settings that point at them (database, broker, caches) and from
    WEBHOOK_DENIED_HOSTS: the compose file names its web service and simulator there."""
    settings.WEBHOOK_DENIED_HOSTS = ["10.9.8.7", "web.factory.internal"]
    settings.CELERY_BROKER_URL = "redis://broker.internal:6390/0"
    endpoints = set(destinations.service_endpoints())
    db = settings.DATABASES["default"]
    assert (db["HOST"], int(db["PORT"] or 5432)) in endpoints
    assert ("broker.internal", 6390) in endpoints
    policy = destinations.destination_policy()
    assert {"web.factory.internal", "broker.internal"} <= policy.own_names
    assert ipaddress.ip_address("10.9.8.7") in policy.own_addresses
    admin = fleet.client("alpha_admin")
    for url in (
        "http://web.factory.internal:8000/api/v1/",
        "http://WEB.factory.internal./",
        "http://broker.internal:6390/",
        "http://10.9.8.7:9100/sim/devices",
        "http://[::ffff:10.9.8.7]/",
    ):
        refused = assert_error_body(create(admin, url=url), 400)
        assert refused["errors"][0]["code"] == "destination_refused", url
    assert create(admin, url="http://10.9.8.8/").status_code == 201  # the customer's


def test_names_are_unique_per_tenant_and_a_subscription_keeps_its_tenant(fleet):
    admin = fleet.client("alpha_admin")
    first = create(admin).json()
    twice = assert_error_body(create(admin), 400)
    assert twice["errors"][0]["field"] == "name"
    assert create(fleet.client("beta_admin")).status_code == 201  # another tenant's namespace
    moved = admin.patch(
        f"{WEBHOOKS}{first['id']}/", {"tenant": fleet.beta.pk}, format="json"
    )  # beta is not alpha-admin's to name either way
    assert_error_body(moved, 400)
    assert moved.json()["errors"][0]["field"] == "tenant"


def test_the_delivery_log_lists_each_attempt_with_its_response_code(fleet):
    admin = fleet.client("alpha_admin")
    with Receiver(script=[503]) as receiver:
        sub = create(admin, url=receiver.url(), kinds=["fault.opened"]).json()
        emit(EventKind.FAULT_OPENED, fleet.alpha, tenant=fleet.alpha, data={"rule": "x"})
        emit(EventKind.WORKFLOW_CREATED, fleet.alpha, tenant=fleet.alpha)  # not wanted
        commit_events()
        delivery = WebhookDelivery.objects.get()
        assert webhooks.deliver(delivery.pk) == "retry"
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=delivery.created_at)
        assert webhooks.deliver(delivery.pk) == "delivered"

    url = f"{WEBHOOKS}{sub['id']}/deliveries/"
    listed = admin.get(url)
    assert listed.status_code == 200, listed.content
    assert_conforms(listed, "get")
    [item] = listed.json()["results"]
    event = Event.objects.get(kind="fault.opened")
    assert item["id"] == delivery.pk and item["event"] == event.sequence
    assert item["kind"] == "fault.opened" and item["state"] == "delivered"
    assert item["attempts"] == 2 and item["in_flight"] is False
    assert [(a["number"], a["status_code"]) for a in item["log"]] == [(1, 503), (2, 200)]
    assert item["log"][0]["error"] == "the receiver answered 503"
    assert item["log"][1]["response_excerpt"] == "ok"
    assert admin.get(url, {"state": "failed"}).json()["results"] == []
    assert len(admin.get(url, {"kind": "fault.opened"}).json()["results"]) == 1
    bad = assert_error_body(admin.get(url, {"state": "lost"}), 400)
    assert bad["errors"][0]["field"] == "state"
    assert_error_body(admin.get(url, {"colour": "red"}), 400)
    viewer = fleet.client("alpha_viewer")
    assert viewer.get(url).status_code == 200
    one = viewer.get(f"/api/v1/webhook-deliveries/{delivery.pk}/")
    assert one.status_code == 200 and one.json()["log"] == item["log"]
    assert_conforms(one, "get")
    everywhere = viewer.get("/api/v1/webhook-deliveries/", {"subscription": sub["id"]})
    assert [d["id"] for d in everywhere.json()["results"]] == [delivery.pk]


def test_filters_on_subscriptions(fleet):
    admin = fleet.client("alpha_admin")
    create(admin, name="siem")
    create(admin, name="pager", is_active=False)
    names = lambda params: sorted(s["name"] for s in admin.get(WEBHOOKS, params).json()["results"])  # noqa: E731
    assert names({"is_active": "true"}) == ["siem"]
    assert names({"q": "pag"}) == ["pager"]
    assert names({"tenant": "alpha"}) == ["pager", "siem"]
    assert_error_body(admin.get(WEBHOOKS, {"is_active": "perhaps"}), 400)
    assert_error_body(admin.get(WEBHOOKS, {"ordering": "secret"}), 400)
