"""The workflow, window, fault and agent endpoints."""

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from factory import wire
from factory.agents import services as agents
from factory.agents.models import AgentCommand
from factory.wire import CommandKind, HardwareState
from provisioning.models import Step, Workflow
from tests.support.api import agent_token_client, assert_error_body, gateway
from tests.support.fleet import CTX, build_fleet
from tests.support.workflows import always_open, put_in_service

CLAIM = gateway(wire.CLAIM_PATH)

pytestmark = pytest.mark.django_db


def upgrade_body(servers, **extra):
    return {
        "kind": "upgrade",
        "targets": {"ultraservers": [s.pk for s in servers]},
        "spec": {"firmware_version": "2.0", "soak_seconds": 0},
        **extra,
    }


def test_create_is_idempotent_and_conflicts_are_409_naming_the_holder(fleet, in_service):
    client = fleet.client("provider_admin")
    first = client.post("/api/v1/workflows/", upgrade_body(in_service[:2], idempotency_key="a"))
    assert first.status_code == 201, first.content
    body = first.json()
    assert body["state"] == "running" and body["progress"]["targets"] == 2
    again = client.post("/api/v1/workflows/", upgrade_body(in_service[:2], idempotency_key="a"))
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    clash = client.post("/api/v1/workflows/", upgrade_body(in_service[1:3]))
    error = assert_error_body(clash, 409)
    assert error["errors"][0] == {
        "field": "targets",
        "code": "held_by_workflow",
        "message": error["message"],
    }
    assert f"{in_service[1].serial} is held by upgrade workflow #{body['id']}" in error["message"]
    assert Workflow.objects.count() == 1


def test_bad_workflow_requests_are_400_naming_the_field(fleet, in_service):
    client = fleet.client("provider_admin")
    unknown = client.post(
        "/api/v1/workflows/", {**upgrade_body(in_service[:1]), "spec": {"bogus": 1}}
    )
    assert "spec.bogus" in {e["field"] for e in assert_error_body(unknown, 400)["errors"]}
    version = client.post(
        "/api/v1/workflows/", {**upgrade_body(in_service[:1]), "spec": {"firmware_version": "9"}}
    )
    assert assert_error_body(version, 400)["errors"][0]["field"] == "spec.firmware_version"
    foreign = client.post("/api/v1/workflows/", upgrade_body([fleet.servers["beta"]]))
    assert foreign.status_code in (400, 409)
    assert Workflow.objects.count() == 0


def test_tenants_watch_but_do_not_steer(fleet, in_service):
    created = fleet.client("provider_admin").post("/api/v1/workflows/", upgrade_body(in_service))
    url = f"/api/v1/workflows/{created.json()['id']}/"
    alpha = fleet.client("alpha_admin")
    assert alpha.get(url).status_code == 200
    assert alpha.get(url + "steps/").json()["count"] == 4 * len(in_service)
    assert alpha.get(url + "history/").json()["results"][0]["kind"] == "created"
    assert assert_error_body(alpha.post(url + "pause/", {}), 403)["code"] == "role"
    assert_error_body(fleet.client("beta_admin").get(url), 404)
    assert_error_body(
        fleet.client("alpha_admin").post("/api/v1/workflows/", upgrade_body(in_service)), 403
    )


def test_pause_resume_cancel_over_the_api(fleet, in_service):
    client = fleet.client("provider_admin")
    created = client.post("/api/v1/workflows/", upgrade_body(in_service)).json()
    url = f"/api/v1/workflows/{created['id']}/"
    assert client.post(url + "pause/", {"reason": "holiday"}).json()["state"] == "paused"
    again = assert_error_body(client.post(url + "pause/", {"reason": "again"}), 409)
    assert again["errors"][0]["code"] == "invalid_workflow_state"
    assert "is paused" in again["message"]
    assert client.post(url + "resume/", {}).json()["state"] == "running"
    assert client.post(url + "cancel/", {"reason": "done"}).json()["state"] == "cancelling"


def test_invalid_lifecycle_transition_is_409_naming_the_current_state(fleet):
    client = fleet.client("provider_admin")
    server = fleet.servers["alpha"]
    response = client.patch(f"/api/v1/ultraservers/{server.pk}/", {"lifecycle_state": "in-service"})
    body = assert_error_body(response, 409)
    assert body["errors"][0]["code"] == "invalid_transition"
    assert body["errors"][0]["field"] == "lifecycle_state"
    assert "is 'planned'" in body["message"] and "installing" in body["message"]
    ok = client.patch(f"/api/v1/ultraservers/{server.pk}/", {"lifecycle_state": "installing"})
    assert ok.status_code == 200


def test_windows_are_approved_by_the_tenant_admin_only(fleet):
    admin = fleet.client("provider_admin")
    created = admin.post(
        "/api/v1/maintenance-windows/",
        {
            "site": fleet.sites["alpha"].pk,
            "name": "sun",
            "weekdays": [6],
            "start_time": "02:00",
            "duration_minutes": 240,
        },
    )
    assert created.status_code == 201 and created.json()["status"] == "proposed"
    url = f"/api/v1/maintenance-windows/{created.json()['id']}/"
    assert_error_body(admin.post(url + "approve/"), 403)
    assert_error_body(fleet.client("alpha_operator").post(url + "approve/"), 403)
    assert_error_body(fleet.client("beta_admin").post(url + "approve/"), 404)
    approved = fleet.client("alpha_admin").post(url + "approve/")
    assert approved.status_code == 200 and approved.json()["decided_by"] == "alpha-admin"
    # changing an approved window sends it back for approval
    changed = admin.patch(url, {"duration_minutes": 300})
    assert changed.json()["status"] == "proposed"


def test_fault_report_opens_a_maintain_workflow(fleet, releases):
    server = put_in_service(fleet.servers["alpha"])
    response = fleet.client("alpha_operator").post(
        "/api/v1/faults/", {"ultraserver": server.pk, "reason": "chip 4 down"}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["in_maintenance"] and body["workflow"]
    assert Workflow.objects.get(pk=body["workflow"]).kind == "maintain"
    again = fleet.client("alpha_operator").post(
        "/api/v1/faults/", {"ultraserver": server.pk, "reason": "chip 5 down too"}
    )
    assert again.json()["workflow"] == body["workflow"]  # the same workflow looks after it
    assert_error_body(
        fleet.client("beta_admin").post(
            "/api/v1/faults/", {"ultraserver": server.pk, "reason": "x"}
        ),
        400,
    )


def test_agent_endpoints_are_site_scoped_and_results_idempotent(fleet):
    alpha_site, beta_site = fleet.sites["alpha"], fleet.sites["beta"]
    _, alpha_token = agents.issue_agent(alpha_site, "a1", CTX)
    agents.issue_agent(beta_site, "b1", CTX)
    own = agents.submit(site_id=alpha_site.pk, kind=CommandKind.RESET)
    foreign = agents.submit(site_id=beta_site.pk, kind=CommandKind.RESET)
    alpha = agent_token_client(alpha_token)
    claimed = alpha.post(CLAIM, {"limit": 10}).json()["commands"]
    assert [c["id"] for c in claimed] == [str(own.pk)]
    assert alpha.post(CLAIM, {}).json()["commands"] == []  # once only
    foreign_url = gateway(wire.RESULT_PATH, command_id=foreign.pk)
    assert_error_body(alpha.post(foreign_url, {"ok": True}), 404)
    url = gateway(wire.RESULT_PATH, command_id=own.pk)
    on = {"ok": True, "result": {HardwareState.POWER_STATE: "On"}}
    assert alpha.post(url, on).status_code == 200
    assert alpha.post(url, on).status_code == 200
    refused = assert_error_body(alpha.post(url, {"ok": False}), 409)
    assert refused["errors"][0]["code"] == "command_finished"
    assert AgentCommand.objects.get(pk=foreign.pk).state == "queued"
    # a person's token is not an agent credential, and the reverse
    assert_error_body(fleet.client("provider_admin").post(CLAIM), 401)
    bogus = agent_token_client("aga_nope")
    assert_error_body(bogus.post(CLAIM, {}), 401)
    assert_error_body(alpha.get("/api/v1/sites/"), 401)


def test_site_agent_token_shown_once_and_revocable(fleet):
    admin = fleet.client("provider_admin")
    created = admin.post("/api/v1/site-agents/", {"site": fleet.sites["alpha"].pk, "name": "x"})
    assert created.status_code == 201
    token = created.json()["token"]
    assert "token" not in admin.get(f"/api/v1/site-agents/{created.json()['id']}/").json()
    assert agent_token_client(token).post(CLAIM, {}).status_code == 200
    admin.post(f"/api/v1/site-agents/{created.json()['id']}/revoke/")
    assert_error_body(agent_token_client(token).post(CLAIM, {}), 401)


def test_jobs_visible_to_provider_people_only(fleet):
    from provisioning import jobs

    jobs.detect_stale_agents()
    rows = fleet.client("provider_admin").get("/api/v1/jobs/latest/").json()
    assert rows[0]["job"] == "stale-agents" and rows[0]["outcome"] == "ok"
    assert_error_body(fleet.client("alpha_admin").get("/api/v1/jobs/"), 403)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_operators_at_once_exactly_one_wins():
    from tests.support.workflows import make_releases

    fleet = build_fleet()
    make_releases()
    server = put_in_service(fleet.servers["alpha"])
    always_open(fleet.sites["alpha"])
    barrier = threading.Barrier(2)
    results = []

    def operator():
        client = fleet.client("provider_admin")
        barrier.wait()
        try:
            results.append(client.post("/api/v1/workflows/", upgrade_body([server])))
        finally:
            connection.close()

    threads = [threading.Thread(target=operator) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 409], [r.content for r in results]
    loser = next(r for r in results if r.status_code == 409).json()
    assert loser["errors"][0]["code"] == "held_by_workflow"
    assert Workflow.objects.count() == 1


def test_manual_step_input_is_checked_before_anything_is_written(fleet, releases):
    server = put_in_service(fleet.servers["alpha"])
    workflow = services_report(server)
    client = fleet.client("technician")
    url = f"/api/v1/workflows/{workflow.pk}/input/"
    cases = [
        ({"step": "flash", "data": {}}, "step"),
        ({"step": "dispatch", "data": {"badge": 1}}, "data.badge"),
        ({"step": "dispatch", "data": {"from_country": "DE"}}, "data.technician"),
        ({"step": "dispatch", "data": {"technician": "abc"}}, "data.technician"),
        ({"step": "dispatch", "data": {"technician": True}}, "data.technician"),
        ({"step": "repair", "data": {"no_parts_needed": "yes"}}, "data.no_parts_needed"),
        ({"data": {}}, "step"),
    ]
    for body, field in cases:
        error = assert_error_body(client.post(url, body), 400)
        assert field in {e["field"] for e in error["errors"]}, (body, error)
    assert Step.objects.get(workflow=workflow, name="dispatch").input == {}
    ok = client.post(url, {"step": "dispatch", "data": {"technician": 1, "from_country": "DE"}})
    assert ok.status_code == 200 and ok.json()["input"]["from_country"] == "DE"
    assert_error_body(fleet.client("alpha_admin").post(url, {"step": "repair", "data": {}}), 403)


def services_report(server):
    from provisioning import services

    return services.report_fault(server, "chip 4 down", CTX)[1]


def test_agent_claim_and_result_reject_bad_input(fleet):
    _, token = agents.issue_agent(fleet.sites["alpha"], "a1", CTX)
    alpha = agent_token_client(token)
    for body, field in (({"limit": 0}, "limit"), ({"wait_seconds": 99}, "wait_seconds")):
        error = assert_error_body(alpha.post(CLAIM, body), 400)
        assert error["errors"][0]["field"] == field
    command = agents.submit(site_id=fleet.sites["alpha"].pk, kind=CommandKind.RESET)
    alpha.post(CLAIM, {})
    url = gateway(wire.RESULT_PATH, command_id=command.pk)
    assert assert_error_body(alpha.post(url, {"result": {}}), 400)["errors"][0]["field"] == "ok"
    assert AgentCommand.objects.get(pk=command.pk).state == "claimed"


def test_a_replaced_part_is_201_with_no_location_of_another_resource(fleet, releases):
    """``parts/`` records a part replacement, which has no URL of its own: its 201 names none
    (not the workflow list's ``/workflows/<the part's id>/``)."""
    server = put_in_service(fleet.servers["alpha"])
    workflow = services_report(server)
    response = fleet.client("technician").post(
        f"/api/v1/workflows/{workflow.pk}/parts/",
        {"ultraserver": server.pk, "part": "chip 4", "rma_number": "RMA-1"},
    )
    assert response.status_code == 201, response.content
    assert response.json()["part"] == "chip 4"
    assert "Location" not in response


STEER = [
    ("pause", {"reason": "holiday"}, "running", "paused"),
    ("resume", {}, "paused", "running"),
    ("cancel", {"reason": "done"}, "running", "cancelling"),
    ("start", {}, "proposed", "running"),
]


def workflow_in(state: str, servers) -> Workflow:
    from provisioning import services

    spec = {"firmware_version": "2.0"}
    workflow, _ = services.create_workflow(
        "upgrade", servers, CTX, spec=spec, start=state != "proposed"
    )
    if state == "paused":
        services.pause(workflow, CTX, reason="test")
    return workflow


@pytest.mark.parametrize(("verb", "body", "before", "after"), STEER, ids=[s[0] for s in STEER])
def test_steering_answers_with_the_workflow_and_its_etag(
    fleet, in_service, verb, body, before, after
):
    client = fleet.client("provider_admin")
    workflow = workflow_in(before, in_service[:2])
    url = f"/api/v1/workflows/{workflow.pk}/"
    response = client.post(url + f"{verb}/", body)
    assert response.status_code == 200, response.content
    assert response.json()["state"] == after
    shown = client.get(url)
    assert response.json() == shown.json()  # as GET shows it, counts and progress included
    assert response["ETag"] == shown["ETag"]


@pytest.mark.parametrize(("verb", "body", "before", "after"), STEER, ids=[s[0] for s in STEER])
def test_steering_honours_if_match(fleet, in_service, verb, body, before, after):
    client = fleet.client("provider_admin")
    workflow = workflow_in(before, in_service[:2])
    url = f"/api/v1/workflows/{workflow.pk}/"
    etag = client.get(url)["ETag"]
    stale = assert_error_body(client.post(url + f"{verb}/", body, HTTP_IF_MATCH='"stale"'), 412)
    assert (stale["code"], stale["errors"][0]["field"]) == ("etag_mismatch", "If-Match")
    workflow.refresh_from_db()
    assert workflow.state == before  # nothing done
    done = client.post(url + f"{verb}/", body, HTTP_IF_MATCH=etag)
    assert done.status_code == 200 and done.json()["state"] == after
    # The version it acted on is gone: acting on it again is refused before anything else.
    assert_error_body(client.post(url + f"{verb}/", body, HTTP_IF_MATCH=etag), 412)


def test_if_match_on_steering_is_checked_under_the_workflows_row_lock(
    fleet, in_service, monkeypatch
):
    """Without the early check, the one the service makes once it holds the workflow's lock
    still refuses a stale version: for pause/resume/cancel/start and for input and parts."""
    from tenants.api.base import ConditionalWritesMixin

    monkeypatch.setattr(ConditionalWritesMixin, "check_if_match", lambda self, instance, e: None)
    client = fleet.client("provider_admin")
    workflow = workflow_in("running", in_service[:1])
    url = f"/api/v1/workflows/{workflow.pk}/"
    stale = {"reason": "x"}
    assert_error_body(client.post(url + "pause/", stale, HTTP_IF_MATCH='"stale"'), 412)
    workflow.refresh_from_db()
    assert workflow.state == "running"
    etag = client.get(url)["ETag"]
    assert client.post(url + "pause/", {"reason": "x"}, HTTP_IF_MATCH=etag).status_code == 200

    maintain = services_report(in_service[1])
    url = f"/api/v1/workflows/{maintain.pk}/"
    technician = fleet.client("technician")
    dispatch = {"step": "dispatch", "data": {"technician": 1, "from_country": "DE"}}
    assert_error_body(technician.post(url + "input/", dispatch, HTTP_IF_MATCH='"stale"'), 412)
    assert Step.objects.get(workflow=maintain, name="dispatch").input == {}
    part = {"ultraserver": in_service[1].pk, "part": "fan"}
    assert_error_body(technician.post(url + "parts/", part, HTTP_IF_MATCH='"stale"'), 412)
    assert not maintain.part_replacements.exists()
    etag = technician.get(url)["ETag"]
    assert technician.post(url + "input/", dispatch, HTTP_IF_MATCH=etag).status_code == 200
    assert technician.post(url + "parts/", part, HTTP_IF_MATCH=etag).status_code == 201


def counted(send) -> tuple[int, int]:
    """The status of ``send()``'s answer, and how many of its queries counted targets."""
    with CaptureQueriesContext(connection) as queries:
        response = send()
    return response.status_code, sum('"target_count"' in q["sql"] for q in queries)


def test_only_the_answers_that_show_a_workflow_count_its_targets(fleet, in_service):
    client = fleet.client("provider_admin")
    workflow = workflow_in("running", in_service[:2])
    url = f"/api/v1/workflows/{workflow.pk}/"
    client.get(url)  # the token's first use is written down once
    for sub in ("steps/", "targets/", "history/", "steps/?state=pending"):
        assert counted(lambda sub=sub: client.get(url + sub)) == (200, 0), sub
    assert counted(lambda: client.get(url)) == (200, 1)
    assert counted(lambda: client.get("/api/v1/workflows/")) == (200, 1)
    # pause: the workflow read once to act on, and once more to answer with
    assert counted(lambda: client.post(url + "pause/", {"reason": "x"})) == (200, 2)


def test_a_workflows_steps_take_the_step_filters(fleet, in_service):
    client = fleet.client("provider_admin")
    workflow = workflow_in("running", in_service[:2])
    steps = f"/api/v1/workflows/{workflow.pk}/steps/"
    everything = client.get(steps).json()["count"]
    pending = client.get(steps, {"state": "pending"}).json()["count"]
    not_pending = client.get(steps, {"state__n": "pending"}).json()["count"]
    assert everything == pending + not_pending and pending > 0
    either = client.get(steps, {"state__in": "pending,ready"}).json()["count"]
    assert either >= pending
    bad = assert_error_body(client.get(steps, {"state": "sleeping"}), 400)
    assert bad["errors"][0]["field"] == "state"
    unknown = assert_error_body(client.get(steps, {"kind": "upgrade"}), 400)
    assert (unknown["code"], unknown["errors"][0]["field"]) == ("unknown_filter", "kind")


def test_the_schema_documents_if_match_and_the_etag_of_steering(fleet):
    schema = fleet.client("alpha_viewer").get("/api/schema/?format=json").json()
    paths = schema["paths"]
    for verb in ("pause", "resume", "cancel", "start", "input", "parts"):
        operation = paths[f"/api/v1/workflows/{{id}}/{verb}/"]["post"]
        headers = {(p["name"], p["in"]) for p in operation["parameters"]}
        assert ("If-Match", "header") in headers and "412" in operation["responses"], verb
        shows_workflow = verb not in ("input", "parts")
        answer = operation["responses"]["201" if verb == "parts" else "200"]
        assert ("ETag" in answer.get("headers", {})) is shows_workflow, verb
    resume = paths["/api/v1/workflows/{id}/resume/"]["post"]["requestBody"]["content"]
    body = resume["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(schema["components"]["schemas"][body]["properties"]) == {
        "max_failures",
        "max_failure_pct",
    }
