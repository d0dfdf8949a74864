"""One front door per change: the API, the admin and the console hand a rolling upgrade's spec
to ``services.create_workflow``, the one place that checks it, and each shows the refusal on
the fields it names; nothing is written."""

import pytest
from django.core.exceptions import NON_FIELD_ERRORS

from provisioning import services
from provisioning.models import Step, Workflow
from tenants.errors import Conflict, Denied, Invalid
from tenants.models import AuditEvent
from tests.support.api import assert_error_body
from tests.support.fleet import CTX

pytestmark = pytest.mark.django_db

BAD = {"batch_size": 0, "soak_seconds": -1}
NAMED = {"batch_size", "soak_seconds"}


def through_api(fleet, servers, client, api) -> dict[str, list[str]]:
    response = api.post(
        "/api/v1/workflows/",
        {
            "kind": "upgrade",
            "targets": {"ultraservers": [s.pk for s in servers]},
            "spec": {"firmware_version": "2.0", **BAD},
        },
    )
    errors = assert_error_body(response, 400)["errors"]
    named: dict[str, list[str]] = {}
    for error in errors:
        assert error["field"].startswith("spec."), error
        named.setdefault(error["field"].removeprefix("spec."), []).append(error["message"])
    return named


def admin_form(fleet, servers, client, spec):
    client.force_login(fleet.people["provider_admin"])  # staff, provider-admin role
    response = client.post(
        "/admin/provisioning/workflow/start-upgrade/",
        {"ultraservers": [s.pk for s in servers], "firmware_version": "2.0", **spec},
    )
    assert response.status_code == 200, response.content[:500]
    return response.context["form"]


def console_form(fleet, servers, client, spec):
    client.force_login(fleet.people["provider_admin"])
    response = client.post(
        "/console/workflows/new-upgrade/",
        {
            "site": fleet.sites["alpha"].pk,
            "servers": [s.pk for s in servers],
            "firmware_version": "2.0",
            **spec,
        },
    )
    assert response.status_code == 200, response.content[:500]
    # the page shows the form's own errors above it, and nothing else
    assert response.context["errors"] == response.context["form"].non_field_errors()
    return response.context["form"]


def through_admin(fleet, servers, client, api) -> dict[str, list[str]]:
    form = admin_form(fleet, servers, client, BAD)
    assert not form.non_field_errors()
    return messages(form)


def through_console(fleet, servers, client, api) -> dict[str, list[str]]:
    form = console_form(fleet, servers, client, BAD)
    assert not form.non_field_errors()  # nothing beside the fields
    return messages(form)


def messages(form) -> dict[str, list[str]]:
    return {
        name: [m for error in errors for m in error.messages]
        for name, errors in form.errors.as_data().items()
    }


@pytest.mark.parametrize("door", [through_api, through_admin, through_console])
def test_every_front_door_refuses_a_bad_spec_naming_the_field(door, fleet, in_service, client):
    api = fleet.client("provider_admin")  # issuing its token is audited: before counting
    before = (Workflow.objects.count(), Step.objects.count(), AuditEvent.objects.count())
    named = door(fleet, in_service[:2], client, api)
    assert set(named) == NAMED, named
    assert any("at least 1" in m for m in named["batch_size"]), named
    assert any("at least 0" in m for m in named["soak_seconds"]), named
    assert (Workflow.objects.count(), Step.objects.count(), AuditEvent.objects.count()) == before


def test_the_three_doors_say_the_same(fleet, in_service, client):
    """Not three sets of rules that happen to agree today: one set, three displays."""
    api = fleet.client("provider_admin")
    doors = (through_api, through_admin, through_console)
    said = [door(fleet, in_service[:2], client, api) for door in doors]
    assert said[0] == said[1] == said[2]


@pytest.mark.parametrize(
    ("refusal", "field"),
    [
        (Invalid("must be at least 1", field="spec.batch_size"), "batch_size"),
        (Conflict("S1 is held by upgrade workflow #9", code="held_by_workflow"), NON_FIELD_ERRORS),
        (Denied("rule-1: firmware not signed", code="sovereignty_denied"), NON_FIELD_ERRORS),
    ],
    ids=["invalid", "conflict", "denied"],
)
def test_admin_and_console_show_every_refusal_alike(
    refusal, field, fleet, in_service, client, monkeypatch
):
    def refuse(*args, **kwargs):
        raise refusal

    monkeypatch.setattr(services, "create_workflow", refuse)
    shown = [door(fleet, in_service[:1], client, {}) for door in (admin_form, console_form)]
    assert messages(shown[0]) == messages(shown[1]) == {field: [refusal.message]}


def test_the_spec_is_stored_with_its_declared_defaults(fleet, releases, in_service):
    given = {"firmware_version": "2.0", "batch_size": 3}
    workflow, _ = services.create_workflow("upgrade", in_service[:1], CTX, spec=given)
    workflow.refresh_from_db()
    assert workflow.spec == {
        "firmware_version": "2.0",
        "batch_size": 3,  # given; the rest are the upgrade's declared defaults
        "canary_size": 1,
        "max_unavailable_per_domain": 1,
        "max_unavailable_units": 1,
        "soak_seconds": 300,
        "health_gate_max_failed_chips": 0,
        "max_failures": 1,
        "max_failure_pct": 10.0,
        "rollback": True,
        "command_timeout_seconds": 900,
        "poll_seconds": 30.0,
        # read from the release, never taken from the caller
        "firmware_origin": "https://firmware.provider.example",
        # per model: the image's origin, and the digest the agent checks the image against
        "firmware_origins": {str(in_service[0].model_id): "https://firmware.provider.example"},
        "firmware_sha256": {str(in_service[0].model_id): releases["2.0"].sha256},
    }


@pytest.mark.parametrize(
    ("spec", "field", "code"),
    [
        ({}, "spec.firmware_version", "required"),
        ({"firmware_version": "2.0", "bogus": 1}, "spec.bogus", "unknown"),
        ({"firmware_version": "2.0", "firmware_signed": True}, "spec.firmware_signed", "unknown"),
        ({"firmware_version": "2.0", "technician": 1}, "spec.technician", "unknown"),
        ({"firmware_version": "2.0", "rollback": "yes"}, "spec.rollback", "invalid"),
        ({"firmware_version": "2.0", "batch_size": True}, "spec.batch_size", "invalid"),
        ({"firmware_version": "2.0", "batch_size": 2.5}, "spec.batch_size", "invalid"),
        ({"firmware_version": "2.0", "max_failure_pct": 101}, "spec.max_failure_pct", "max_value"),
        ({"firmware_version": "x" * 65}, "spec.firmware_version", "max_length"),
    ],
)
def test_the_api_names_each_refused_spec_field(fleet, in_service, spec, field, code):
    response = fleet.client("provider_admin").post(
        "/api/v1/workflows/",
        {"kind": "upgrade", "targets": {"ultraservers": [in_service[0].pk]}, "spec": spec},
    )
    errors = assert_error_body(response, 400)["errors"]
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in errors
    ], errors
    assert not Workflow.objects.exists()


def test_a_spec_that_is_not_an_object_is_refused(fleet, in_service):
    response = fleet.client("provider_admin").post(
        "/api/v1/workflows/",
        {"kind": "upgrade", "targets": {"ultraservers": [in_service[0].pk]}, "spec": [1]},
    )
    assert assert_error_body(response, 400)["errors"][0]["field"] == "spec"


def test_a_new_failure_budget_on_resume_is_checked_by_the_declaration(fleet, in_service):
    workflow, _ = services.create_workflow(
        "upgrade", in_service[:1], CTX, spec={"firmware_version": "2.0"}
    )
    services.pause(workflow, CTX, reason="test")
    url = f"/api/v1/workflows/{workflow.pk}/resume/"
    client = fleet.client("provider_admin")
    error = assert_error_body(client.post(url, {"max_failure_pct": 150}), 400)
    assert error["errors"][0]["field"] == "max_failure_pct"
    # a string is not a number here any more than in ``spec``: no coercion before the service
    text = assert_error_body(client.post(url, {"max_failures": "5"}, format="json"), 400)
    assert (text["errors"][0]["field"], text["errors"][0]["code"]) == ("max_failures", "invalid")
    workflow.refresh_from_db()
    assert workflow.state == "paused" and workflow.spec["max_failure_pct"] == 10.0
    assert client.post(url, {"max_failures": 3}).status_code == 200
    workflow.refresh_from_db()
    assert workflow.state == "running" and workflow.spec["max_failures"] == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"batch_size": 5}, "batch_size"),  # declared in the spec, but not a budget
        ({"max_failures": 3, "bogus": 1}, "bogus"),
        ({"max_failures": 3, "failures_acknowledged": 0}, "failures_acknowledged"),
    ],
    ids=["spec-not-budget", "unknown", "internal"],
)
def test_resume_refuses_an_unknown_key_naming_it(fleet, in_service, body, field):
    workflow, _ = services.create_workflow(
        "upgrade", in_service[:1], CTX, spec={"firmware_version": "2.0"}
    )
    services.pause(workflow, CTX, reason="test")
    spec = Workflow.objects.get(pk=workflow.pk).spec
    response = fleet.client("provider_admin").post(f"/api/v1/workflows/{workflow.pk}/resume/", body)
    error = assert_error_body(response, 400)
    assert [(e["field"], e["code"]) for e in error["errors"]] == [(field, "unknown")], error
    assert error["message"] == (
        f"{field} is not a parameter here; known: max_failures, max_failure_pct"
    )
    workflow.refresh_from_db()
    assert (workflow.state, workflow.spec) == ("paused", spec)  # nothing changed


def test_the_api_schema_describes_the_spec_from_the_declarations(fleet):
    schema = fleet.client("alpha_viewer").get("/api/schema/?format=json").json()
    spec = schema["components"]["schemas"]["WorkflowCreateRequest"]["properties"]["spec"]
    assert spec["additionalProperties"] is False
    batch = spec["properties"]["batch_size"]
    assert (batch["type"], batch["minimum"], batch["maximum"]) == ("integer", 1, 10_000)
    assert "upgrade (default 10)" in batch["description"]
    assert "upgrade (required)" in spec["properties"]["firmware_version"]["description"]
    assert spec["properties"]["technician"]["description"].endswith("Applies to: maintain.")
