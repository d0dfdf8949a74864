"""Metrics people can alert on: real scrapes checked by promtool, the counters moving as
requests and batches arrive, a tenant's scrape cut like the API, histograms that only grow and
are the same from every process, a scrape's cost bounded (cached per scope, a rate budget of
its own, a number of queries that does not grow with the rows), webhook and stream series, and
the shipped alert rules and dashboard naming only what is exported."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

import factory.telemetry
from factory import wire
from factory.telemetry import metrics
from provisioning import jobs, services
from provisioning.choices import JobOutcome
from provisioning.metrics import JOB_BUCKETS
from provisioning.models import JobRun
from tenants.access import actor_for
from tenants.events import slots
from tenants.events.choices import DeliveryState
from tenants.events.kinds import EventKind
from tenants.events.models import Event, WebhookDelivery, WebhookSubscription
from tests.support.api import assert_error_body, rate_limits
from tests.support.fleet import CTX
from tests.support.hardware import SimHardware
from tests.support.harness import drive
from tests.support.schema import openapi_schema
from tests.support.telemetry import agent_client, feed, pdu_report, post, server_report
from tests.support.workflows import make_releases

pytestmark = pytest.mark.django_db

PROMETHEUS = Path(factory.telemetry.__file__).resolve().parent / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
DASHBOARD = PROMETHEUS / "grafana-fleet.json"
ALERT_TESTS = Path(__file__).resolve().parent / "alerts_test.yml"
FAILED = int(wire.HealthCode.FAILED)


# --- reading a scrape ---------------------------------------------------------------------------


def scrape(client: APIClient, path: str = "/metrics") -> str:
    response = client.get(path)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain"), response["Content-Type"]
    return response.content.decode()


def samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            yield sample.name, sample.labels, sample.value


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` that carry ``labels``; 0 if none."""
    return sum(
        v
        for n, have, v in samples(text)
        if n == name and all(have.get(k) == want for k, want in labels.items())
    )


def exported(text: str) -> set[str]:
    """Every series name the scrape declares, a histogram's _bucket, _count and _sum too."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return names


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["promtool", *args], input=stdin, capture_output=True, text=True, timeout=120
    )


def failed_chips(n: int, of: int = 144) -> list[int]:
    return [FAILED] * n + [0] * (of - n)


# --- a fleet with something in every family -----------------------------------------------------


@pytest.fixture
def world(fleet):
    """Alpha: a stored batch with a failed chip, a PDU reporting a feed lost, a deploy
    workflow run to the end, a refused batch. Beta: a stored batch. Two scheduled job runs."""
    alpha, beta = fleet.sites["alpha"], fleet.sites["beta"]
    alpha_agent, agent = agent_client(alpha)
    beta_agent, _ = agent_client(beta)
    alpha_server, beta_server = fleet.servers["alpha"], fleet.servers["beta"]
    post(beta_agent, [server_report(beta_server.serial, 1)])
    source = wire.pdu_source(fleet.racks["alpha"].name)
    post(alpha_agent, [pdu_report(source, 1, {"A1": feed(0.0, up=False), "B1": feed(9000.0)})])
    assert post(alpha_agent, b"not json").status_code == 400
    make_releases()
    workflow, _ = services.create_workflow("deploy", [alpha_server], CTX, spec={"poll_seconds": 1})
    workflow = drive(workflow, agent, SimHardware())
    assert workflow.state == "succeeded", workflow.state_reason
    # after the deploy, whose burn-in judges the chips afresh
    post(alpha_agent, [server_report(alpha_server.serial, 1, health=failed_chips(1))])
    jobs.detect_stale_agents()
    jobs.telemetry_rollup()
    return fleet


# --- the scrape ---------------------------------------------------------------------------------


EVERY_FAMILY = {
    "factory_chips",
    "factory_ultraservers",
    "factory_power_drawn_watts",
    "factory_power_feed_up",
    "factory_ultraserver_power_watts",
    "factory_telemetry_lag_seconds",
    "factory_ultraserver_telemetry_age_seconds",
    "factory_telemetry_ingest_chip_samples_per_second",
    "factory_faults_open",
    "factory_workflows",
    "factory_workflows_finished",
    "factory_workflow_step_duration_seconds",
    "factory_workflow_steps_due",
    "factory_workflow_steps_leased",
    "factory_job_duration_seconds",
    "factory_job_last_success_timestamp_seconds",
    "factory_scheduler_up",
    "factory_celery_broker_up",
    "factory_celery_queue_length",
    "factory_webhook_subscriptions",
    "factory_webhook_deliveries",
    "factory_webhook_oldest_pending_delivery_age_seconds",
    "factory_event_streams_open",
    "factory_http_requests_total",
    "factory_http_request_duration_seconds",
    "factory_telemetry_ingest_accepted_batches_total",
    "factory_telemetry_ingest_rejected_batches_total",
    "factory_telemetry_ingest_reports_total",
}


def test_the_provider_scrape_is_clean_for_promtool_and_has_every_family(world):
    text = scrape(world.client("provider_admin"))
    checked = promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert not (checked.stdout + checked.stderr).strip(), checked.stdout + checked.stderr  # lint
    assert exported(text) >= EVERY_FAMILY, EVERY_FAMILY - exported(text)

    # the deploy's six steps, each timed from first claim to finish
    count = "factory_workflow_step_duration_seconds_count"
    assert value(text, count, kind="deploy", outcome="succeeded") == 6
    assert value(text, count, kind="deploy", step="burn_in", outcome="succeeded") == 1
    assert value(text, "factory_workflow_step_duration_seconds_bucket", step="burn_in", le="+Inf")
    assert value(text, "factory_workflows_finished", kind="deploy", state="succeeded") == 1
    assert value(text, "factory_workflows_finished", kind="upgrade", state="failed") == 0
    assert "# TYPE factory_workflows_finished gauge" in text
    assert "factory_workflows_finished_total" not in text
    # the scheduled jobs that ran
    job_count = "factory_job_duration_seconds_count"
    assert value(text, job_count, job="stale-agents", outcome="ok") >= 1
    assert value(text, "factory_job_last_success_timestamp_seconds", job="telemetry-rollup") > 0
    # the fleet as the telemetry left it
    assert value(text, "factory_chips", site="ALP1", health="failed") == 1
    assert value(text, "factory_power_feed_up", site="ALP1", feed="A1") == 0
    assert value(text, "factory_power_feed_up", site="ALP1", feed="B1") == 1
    assert value(text, "factory_faults_open", site="ALP1", rule="feed-loss") == 1
    age = value(text, "factory_ultraserver_telemetry_age_seconds", ultraserver="BET1-SRV1")
    assert 0 <= age < 60
    # the broker of this test run is up, and its queue is read
    assert value(text, "factory_celery_broker_up") == 1
    assert value(text, "factory_celery_queue_length") >= 0


def test_a_request_is_counted_by_its_route_never_by_its_path(fleet):
    provider = fleet.client("provider_admin")
    counted = {"route": "site-detail", "method": "GET"}
    before = scrape(provider)
    for site in fleet.sites.values():
        assert provider.get(f"/api/v1/sites/{site.pk}/").status_code == 200
    assert provider.get("/api/v1/sites/999999/").status_code == 404
    assert provider.get("/no/such/page/").status_code == 404
    after = scrape(provider)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("factory_http_requests_total", **counted, status="200") == 2
    assert grew("factory_http_requests_total", **counted, status="404") == 1
    assert grew("factory_http_requests_total", route="unmatched", status="404") == 1
    assert grew("factory_http_request_duration_seconds_count", **counted) == 3
    # the scrape before is counted too, by its own route
    assert grew("factory_http_requests_total", route="metrics", status="200") == 1
    routes = {labels["route"] for name, labels, _ in samples(after) if "route" in labels}
    assert not [r for r in routes if "/" in r or re.search(r"\d{3,}", r)], routes


def test_telemetry_batches_are_counted_accepted_and_refused(fleet):
    provider = fleet.client("provider_admin")
    client, _ = agent_client(fleet.sites["alpha"])
    alpha = fleet.servers["alpha"]
    before = scrape(provider)
    post(client, [server_report(alpha.serial, 1)])
    post(client, [server_report(alpha.serial, 1), server_report(alpha.serial, 2)])  # 1 replay
    assert post(client, b"{").status_code == 400
    assert post(client, [server_report(fleet.servers["beta"].serial, 1)]).status_code == 403
    after = scrape(provider)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    accepted = "factory_telemetry_ingest_accepted_batches_total"
    rejected = "factory_telemetry_ingest_rejected_batches_total"
    reports = "factory_telemetry_ingest_reports_total"
    assert grew(accepted, site="ALP1") == 2
    assert grew(reports, site="ALP1", outcome="stored") == 2
    assert grew(reports, site="ALP1", outcome="replayed") == 1
    assert grew(rejected, site="ALP1", reason="parse_error") == 1
    assert grew(rejected, site="ALP1", reason="other_site") == 1
    assert grew(rejected) == 2


# --- the tenant's endpoint ----------------------------------------------------------------------


def test_a_tenant_scrapes_only_its_own_fleet(world):
    text = scrape(world.client("alpha_operator"), "/api/v1/metrics/")
    checked = promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    sites = {labels["site"] for _, labels, _ in samples(text) if "site" in labels}
    assert sites == {"ALP1"}
    assert "BET1" not in text  # no site code, server serial or rack of beta's
    assert value(text, "factory_chips", site="ALP1", health="failed") == 1
    assert value(text, "factory_workflows", kind="deploy", state="succeeded") == 1
    assert value(text, "factory_workflow_step_duration_seconds_count", kind="deploy") == 6
    # this process's counters (earlier tests' batches too), alpha's only
    assert value(text, "factory_telemetry_ingest_rejected_batches_total", site="ALP1") >= 1
    plant_wide = ("factory_http_", "factory_celery_", "factory_job_")
    assert not [name for name in exported(text) if name.startswith(plant_wide)]

    beta = scrape(world.client("beta_viewer"), "/api/v1/metrics/")
    assert {labels["site"] for _, labels, _ in samples(beta) if "site" in labels} == {"BET1"}
    assert "ALP1" not in beta
    assert value(beta, "factory_workflows") == 0  # alpha's deploy is not beta's
    assert value(beta, "factory_workflow_step_duration_seconds_count") == 0


def test_the_provider_sees_everything_on_the_tenant_endpoint(world):
    text = scrape(world.client("technician"), "/api/v1/metrics/")
    sites = {labels["site"] for _, labels, _ in samples(text) if "site" in labels}
    assert {"ALP1", "BET1"} <= sites
    assert exported(text) >= EVERY_FAMILY


def test_a_scraper_asking_for_text_gets_text_and_a_refusal_is_json(fleet):
    scraper = fleet.client("alpha_viewer")
    for path in ("/api/v1/metrics/", "/metrics"):
        for accept in ("text/plain", "text/plain;version=0.0.4", "application/openmetrics-text"):
            refused = APIClient().get(path, HTTP_ACCEPT=accept)
            assert_error_body(refused, 401)
            assert refused["Content-Type"] == "application/json"
    answer = scraper.get("/api/v1/metrics/", HTTP_ACCEPT="text/plain;version=0.0.4")
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/plain")
    assert b"# TYPE factory_chips gauge" in answer.content


def test_the_tenant_endpoint_wants_a_token(fleet):
    assert_error_body(APIClient().get("/api/v1/metrics/"), 401)
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert_error_body(bad.get("/api/v1/metrics/"), 401)
    assert_error_body(fleet.client("alpha_admin").get("/metrics"), 403)  # /metrics: provider


def test_the_tenant_endpoint_is_documented_as_plain_text():
    operation = openapi_schema()["paths"]["/api/v1/metrics/"]["get"]
    assert list(operation["responses"]["200"]["content"]) == ["text/plain"]
    assert "bearerAuth" in {name for scheme in operation["security"] for name in scheme}
    assert operation["responses"]["401"]["content"]["application/json"]


# --- the shipped alert rules --------------------------------------------------------------------


def test_the_shipped_alert_rules_pass_promtool():
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_the_alerts_fire_as_intended():
    """Feed loss, stale telemetry, failed and down chips, 5xx rate, p99 latency, workflow
    failures and broker down: each fires when it should, with its labels and annotations, and
    not before."""
    tested = promtool("test", "rules", str(ALERT_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _alert_rules() -> list[dict]:
    return [
        rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    ]


def test_every_alert_has_a_wait_a_severity_and_words_for_people():
    rules = _alert_rules()
    assert len(rules) >= 10
    for rule in rules:
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: ours all start with ``factory_`` (label
    matchers and strings are dropped first, so a label value cannot pass for one)."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}", "", bare)
    return set(re.findall(r"\b(factory_[a-zA-Z0-9_:]+)", bare))


def test_every_metric_the_rules_and_the_dashboard_read_is_exported(world):
    names = exported(scrape(world.client("provider_admin")))
    read: dict[str, set[str]] = {}
    for rule in _alert_rules():
        read[f"alert {rule['alert']}"] = metric_names(rule["expr"])
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            read[f"panel {panel['title']!r} {target['refId']}"] = metric_names(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            read[f"variable {variable['name']}"] = metric_names(variable["definition"])
    assert all(read.values()), [where for where, found in read.items() if not found]
    unknown = {where: found - names for where, found in read.items() if found - names}
    assert not unknown, unknown


# --- the shipped dashboard ----------------------------------------------------------------------


def _differences(wrote, loaded, path: str = "") -> Iterator[str]:
    """Where ``loaded`` lost or changed something of ``wrote``."""
    if isinstance(wrote, dict):
        if not isinstance(loaded, dict):
            yield f"{path}: not an object"
            return
        for key, item in wrote.items():
            if key not in loaded:
                yield f"{path}.{key}: not in Grafana's model"
            else:
                yield from _differences(item, loaded[key], f"{path}.{key}")
    elif isinstance(wrote, list):
        if not isinstance(loaded, list) or len(wrote) != len(loaded):
            yield f"{path}: list changed"
            return
        for i, (a, b) in enumerate(zip(wrote, loaded, strict=True)):
            yield from _differences(a, b, f"{path}[{i}]")
    elif wrote != loaded:
        yield f"{path}: {wrote!r} became {loaded!r}"


def test_the_dashboard_loads_in_grafanas_dashboard_model():
    """Grafana's own dashboard model (grafana-foundation-sdk, generated from Grafana's schema)
    reads the JSON back field for field: a misspelt or misplaced key is lost on the way and
    shows up here. Enums the loader does not check are checked against the model's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the v1 model is what Grafana imports
        from grafana_foundation_sdk.cog import plugins
        from grafana_foundation_sdk.cog.encoder import JSONEncoder
        from grafana_foundation_sdk.cog.runtime import Runtime
        from grafana_foundation_sdk.models import dashboard as model
        from grafana_foundation_sdk.models.prometheus import Dataquery

        plugins.register_default_plugins()
        wrote = json.loads(DASHBOARD.read_text())
        loaded = model.Dashboard.from_json(wrote)
        again = json.loads(json.dumps(loaded, cls=JSONEncoder))
    assert not list(_differences(wrote, again))

    assert wrote["uid"] and wrote["title"] and wrote["schemaVersion"] >= 36
    model.DashboardCursorSync(wrote["graphTooltip"])
    for variable in wrote["templating"]["list"]:
        model.VariableType(variable["type"])
    panel_types = set(Runtime().panelcfg_variants) | {"row"}
    ids = [panel["id"] for panel in wrote["panels"]]
    assert len(ids) == len(set(ids))
    for panel, typed in zip(wrote["panels"], loaded.panels or [], strict=True):
        assert panel["type"] in panel_types, panel["type"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert all(isinstance(target, Dataquery) for target in typed.targets), panel["title"]
        assert all(
            t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            for t in panel["targets"]
        )


# --- histograms that only grow, the same from every process -------------------------------------


def job_histogram(text: str) -> dict[tuple[str, str, str, str], float]:
    """The job histogram's samples by (series, job, outcome, le)."""
    found = {}
    for name, labels, v in samples(text):
        if name.startswith("factory_job_duration_seconds"):
            key = (name, labels["job"], labels["outcome"], labels.get("le", ""))
            found[key] = v
    return found


def test_job_durations_are_every_finished_run_and_only_grow(fleet):
    """One aggregate over the rows: a run that finishes long after it started (past any
    in-process frontier) is counted when it finishes, by every scrape alike."""
    provider = fleet.client("provider_admin")
    failing = jobs.recorded("always-fails")(lambda: 1 / 0)
    jobs.detect_stale_agents()
    with pytest.raises(ZeroDivisionError):
        failing()
    long_ago = timezone.now() - dt.timedelta(hours=3)
    slow = JobRun.objects.create(job="slow", started_at=long_ago)  # still running
    first = job_histogram(scrape(provider))
    assert first[("factory_job_duration_seconds_count", "always-fails", "failed", "")] == 1
    assert ("factory_job_duration_seconds_count", "slow", "ok", "") not in first
    again = job_histogram(scrape(provider))
    assert again == first  # a second process (or scrape) answers the same: no tally kept

    slow.outcome, slow.finished_at = JobOutcome.OK, timezone.now()
    slow.save()
    jobs.detect_stale_agents()
    later = job_histogram(scrape(provider))
    assert all(later[key] >= was for key, was in first.items()), "a bucket went back"
    assert later[("factory_job_duration_seconds_count", "slow", "ok", "")] == 1
    assert later[("factory_job_duration_seconds_bucket", "slow", "ok", "900.0")] == 0
    assert later[("factory_job_duration_seconds_bucket", "slow", "ok", "+Inf")] == 1
    assert later[("factory_job_duration_seconds_sum", "slow", "ok", "")] >= 3 * 3600
    stale = ("factory_job_duration_seconds_count", "stale-agents", "ok", "")
    assert later[stale] == first[stale] + 1
    # and it agrees with the rows, all of them
    rows = metrics.tally_durations(
        JobRun.objects.all(), ["job", "outcome"], "started_at", "finished_at", JOB_BUCKETS
    )
    assert {(job, outcome): d.count for (job, outcome), (d, _) in rows.items()} == {
        (k[1], k[2]): v for k, v in later.items() if k[0].endswith("_count")
    }


def test_a_scrape_costs_the_same_queries_however_many_rows(world):
    provider = world.client("provider_admin")
    scrape(provider)  # warm: the token's last use is written once

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            scrape(provider)
        return len(captured)

    before = queries()
    for _ in range(5):
        jobs.detect_stale_agents()
    services.create_workflow("deploy", [world.servers["beta"]], CTX, spec={"poll_seconds": 1})
    assert queries() == before


# --- what a scrape costs: cached per scope, a budget of its own -----------------------------------


def test_the_database_families_are_cached_per_scope_and_the_counters_are_live(world, settings):
    settings.METRICS_CACHE_SECONDS = 10
    provider = world.client("provider_admin")
    alpha = world.client("alpha_viewer")
    everything = metrics.Scope(actor_for(world.people["provider_admin"]))
    mine = metrics.Scope(actor_for(world.people["alpha_viewer"]))
    assert everything.cache_key != mine.cache_key
    assert mine.cache_key == metrics.Scope(actor_for(world.people["alpha_admin"])).cache_key
    cache.delete_many([everything.cache_key, mine.cache_key])
    first = scrape(provider)
    alpha_first = scrape(alpha, "/api/v1/metrics/")
    chips = value(first, "factory_chips", site="ALP1", health="failed")
    world.servers["alpha"].chips.update(health="failed")
    second = scrape(provider)
    # the database families as they were; the request counters moved
    assert value(second, "factory_chips", site="ALP1", health="failed") == chips
    route = {"route": "metrics", "method": "GET", "status": "200"}
    grew = value(second, "factory_http_requests_total", **route) - value(
        first, "factory_http_requests_total", **route
    )
    assert grew == 1
    # each scope has its own entry: alpha's is alpha's, cut as before
    alpha_again = scrape(alpha, "/api/v1/metrics/")
    assert "BET1" not in alpha_again
    assert value(alpha_again, "factory_chips", site="ALP1", health="failed") == value(
        alpha_first, "factory_chips", site="ALP1", health="failed"
    )
    checked = promtool("check", "metrics", stdin=second)
    assert checked.returncode == 0 and not (checked.stdout + checked.stderr).strip()
    cache.delete(everything.cache_key)  # once it lapses: read afresh
    fresh = scrape(provider)
    assert value(fresh, "factory_chips", site="ALP1", health="failed") > chips


def test_scrapes_have_a_rate_budget_of_their_own(fleet, settings):
    rate_limits(settings, metrics="2/min", token="100/min")
    client = fleet.client("alpha_viewer")
    assert [client.get("/api/v1/metrics/").status_code for _ in range(2)] == [200, 200]
    refused = client.get("/api/v1/metrics/")
    assert assert_error_body(refused, 429)["code"] == "throttled"
    assert int(refused["Retry-After"]) >= 1 and "metrics" in refused.json()["message"]
    assert client.get("/api/v1/sites/").status_code == 200  # the token's API budget is apart
    assert fleet.client("beta_viewer").get("/api/v1/metrics/").status_code == 200


# --- webhooks and streams -----------------------------------------------------------------------


def test_webhook_and_stream_series_by_tenant_cut_like_the_api(fleet, settings):
    settings.EVENTS_WATCH_KEY_PREFIX = f"eventstreams-test-{uuid.uuid4().hex}"
    hooks = {
        name: WebhookSubscription.objects.create(
            tenant=tenant, name=name, url="https://hooks.example/", secret="s", is_active=active
        )
        for name, tenant, active in [
            ("alpha-up", fleet.alpha, True),
            ("alpha-off", fleet.alpha, False),
            ("beta-up", fleet.beta, True),
        ]
    }
    now = timezone.now()

    def delivery(hook: str, state: str, age_seconds: float, n: int) -> None:
        event = Event.objects.create(
            kind=EventKind.FAULT_OPENED, subject_type="site", subject_id=str(n)
        )
        made = WebhookDelivery.objects.create(subscription=hooks[hook], event=event, state=state)
        WebhookDelivery.objects.filter(pk=made.pk).update(
            created_at=now - dt.timedelta(seconds=age_seconds)
        )

    delivery("alpha-up", DeliveryState.PENDING, 600, 1)
    delivery("alpha-up", DeliveryState.PENDING, 60, 2)
    delivery("alpha-up", DeliveryState.FAILED, 9000, 3)
    delivery("alpha-up", DeliveryState.DELIVERED, 9000, 4)
    delivery("alpha-off", DeliveryState.PENDING, 7200, 5)  # held: its subscription is off
    delivery("beta-up", DeliveryState.PENDING, 30, 6)
    held = [slots.acquire("token:a1", [fleet.alpha.pk], 60) for _ in range(2)]
    held.append(slots.acquire("token:p", [None], 60))
    try:
        text = scrape(fleet.client("provider_admin"))
        alpha = scrape(fleet.client("alpha_viewer"), "/api/v1/metrics/")
    finally:
        for slot in held:
            slot.release()
    checked = promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0 and not (checked.stdout + checked.stderr).strip()

    subs = "factory_webhook_subscriptions"
    assert value(text, subs, tenant="alpha", state="active") == 1
    assert value(text, subs, tenant="alpha", state="disabled") == 1
    assert value(text, subs, tenant="beta", state="active") == 1
    deliveries = "factory_webhook_deliveries"
    assert value(text, deliveries, tenant="alpha", state="pending") == 3
    assert value(text, deliveries, tenant="alpha", state="failed") == 1
    assert value(text, deliveries, tenant="beta", state="pending") == 1
    assert value(text, deliveries, tenant="beta", state="failed") == 0
    states = {labels["state"] for n, labels, _ in samples(text) if n == deliveries}
    assert states == {"pending", "failed"}  # delivered ones are not series
    oldest = "factory_webhook_oldest_pending_delivery_age_seconds"
    assert 600 <= value(text, oldest, tenant="alpha") < 700  # not the held one's 7200
    assert 30 <= value(text, oldest, tenant="beta") < 100
    streams = "factory_event_streams_open"
    assert value(text, streams, tenant="alpha") == 2
    assert value(text, streams, tenant="beta") == 0
    assert value(text, streams, tenant="") == 1  # the provider's people's

    tenants_seen = {labels["tenant"] for _, labels, _ in samples(alpha) if "tenant" in labels}
    assert tenants_seen == {"alpha"}
    assert value(alpha, deliveries, tenant="alpha", state="pending") == 3
    assert value(alpha, streams, tenant="alpha") == 2
