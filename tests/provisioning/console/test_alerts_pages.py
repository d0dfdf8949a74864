"""The console's Faults & alerts page, header badge and freshness cells, with Django's test
client against real PostgreSQL: scoping, the audited actions and their refusals, what the badge
counts, the stale label, heartbeats written by ingest, and what a refreshing tab costs."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from factory.agents import services as agents
from factory.agents.models import SiteAgent
from factory.inventory.models import UltraServer
from factory.telemetry import faults, ingest
from factory.telemetry.choices import FaultSeverity
from factory.telemetry.ingest import _heard_from, stale_after
from factory.telemetry.models import Fault, ServerTelemetry
from factory.telemetry.rules import Finding
from factory.wire import FaultRule
from tenants.models import AuditEvent
from tests.support.fleet import make_rack, make_server, make_site
from tests.support.telemetry import CTX, agent_client, post, server_report


def login(client, username: str):
    client.force_login(get_user_model().objects.get(username=username))
    return client


def open_fault(
    server, rule=FaultRule.ECC_UNCORRECTABLE, chip=3, severity=FaultSeverity.CRITICAL, **fields
) -> Fault:
    """A fault opened by the engine's own path, then given the severity the test wants."""
    faults.raise_findings(server.rack.site_id, [(server.pk, Finding(rule, "ECC storm", chip))], [])
    fault = Fault.objects.get(ultraserver=server, rule=rule, cleared_at__isnull=True)
    Fault.objects.filter(pk=fault.pk).update(severity=severity, **fields)
    fault.refresh_from_db()
    return fault


def site_fault(site, subject: str, severity: str) -> Fault:
    faults.raise_findings(
        site.pk, [], [Finding(FaultRule.AGENT_SILENT, f"{subject}", subject=subject)]
    )
    fault = Fault.objects.get(site=site, key__endswith=subject, cleared_at__isnull=True)
    Fault.objects.filter(pk=fault.pk).update(severity=severity)
    return fault


def test_the_page_lists_open_faults_critical_first_and_only_the_tenants_own(client, fleet):
    alpha, beta = fleet.servers["alpha"], fleet.servers["beta"]
    info = site_fault(alpha.rack.site, "info-one", FaultSeverity.INFO)
    critical = open_fault(alpha)
    warning = site_fault(alpha.rack.site, "warn-one", FaultSeverity.WARNING)
    theirs = open_fault(beta)
    login(client, "padmin")
    page = client.get("/console/alerts/").content.decode()
    order = [page.index(f'id="fault-{f.pk}"') for f in (critical, warning, info)]
    assert order == sorted(order)
    assert f'id="fault-{theirs.pk}"' in page  # the provider sees every tenant's
    assert alpha.serial in page and "chip 3" in page and "ECC storm" in page
    login(client, "alpha-viewer")
    page = client.get("/console/alerts/").content.decode()
    assert f'id="fault-{critical.pk}"' in page and f'id="fault-{theirs.pk}"' not in page
    assert "Act on #" not in page  # a viewer looks only


def test_another_tenants_fault_actions_are_404_and_a_viewers_403(client, fleet):
    theirs = open_fault(fleet.servers["beta"])
    mine = open_fault(fleet.servers["alpha"])
    login(client, "alpha-admin")
    for verb in ("acknowledge", "silence", "resolve"):
        response = client.post(f"/console/alerts/{theirs.pk}/{verb}/", {"note": "mine now"})
        assert response.status_code == 404, verb
    login(client, "alpha-viewer")
    assert client.post(f"/console/alerts/{mine.pk}/acknowledge/", {"note": "x"}).status_code == 403
    theirs.refresh_from_db()
    mine.refresh_from_db()
    assert not theirs.acknowledged_at and not mine.acknowledged_at


def _audit_notes(fault: Fault) -> list[dict]:
    return [
        e.after
        for e in AuditEvent.objects.filter(
            object_type="telemetry.fault", object_id=str(fault.pk)
        ).order_by("occurred_at", "pk")
    ]


def test_acknowledge_silence_and_resolve_are_audited_with_the_note(client, fleet):
    fault = open_fault(fleet.servers["alpha"])
    login(client, "alpha-operator")
    response = client.post(
        f"/console/alerts/{fault.pk}/acknowledge/", {"note": "swapping the chip", "severity": ""}
    )
    assert response.status_code == 302 and response["Location"] == "/console/alerts/"
    fault.refresh_from_db()
    assert (fault.acknowledged_by, fault.acknowledge_note) == (
        "alpha-operator",
        "swapping the chip",
    )
    page = client.get("/console/alerts/").content.decode()
    assert "swapping the chip" in page

    response = client.post(
        f"/console/alerts/{fault.pk}/silence/", {"note": "parts on order", "hours": "24"}
    )
    assert response.status_code == 302
    fault.refresh_from_db()
    assert fault.silenced_until - timezone.now() > dt.timedelta(hours=23)
    page = client.get("/console/alerts/").content.decode()
    silenced_part = page[page.index('id="section-silenced"') :]
    assert f'id="fault-{fault.pk}"' in silenced_part and "parts on order" in silenced_part

    response = client.post(
        f"/console/alerts/{fault.pk}/resolve/", {"note": "chip replaced", "state": "silenced"}
    )
    assert response.status_code == 302 and response["Location"] == "/console/alerts/?state=silenced"
    fault.refresh_from_db()
    assert fault.cleared_at and fault.cleared_by == "alpha-operator"
    notes = _audit_notes(fault)
    assert any(a.get("acknowledge_note") == "swapping the chip" for a in notes)
    assert any(a.get("silence_note") == "parts on order" for a in notes)
    assert any("chip replaced" in (a.get("cleared_reason") or "") for a in notes)
    resolved = client.get("/console/alerts/?state=resolved").content.decode()
    assert f'id="fault-{fault.pk}"' in resolved and "chip replaced" in resolved


def test_refusals_are_shown_on_the_row_and_nothing_is_written(client, fleet):
    fault = open_fault(fleet.servers["alpha"])
    login(client, "alpha-admin")
    response = client.post(f"/console/alerts/{fault.pk}/acknowledge/", {"note": "  "})
    assert response.status_code == 400
    page = response.content.decode()
    assert "note: note is required" in page and f"Fault #{fault.pk}: acknowledge refused" in page
    fault.refresh_from_db()
    assert not fault.acknowledged_at and not _audit_notes(fault)
    client.post(f"/console/alerts/{fault.pk}/resolve/", {"note": "done"})
    again = client.post(f"/console/alerts/{fault.pk}/resolve/", {"note": "done again"})
    assert again.status_code == 409 and "already resolved" in again.content.decode()


def test_the_badge_links_to_the_page_and_counts_loud_open_faults(client, fleet):
    alpha = fleet.servers["alpha"]
    login(client, "alpha-admin")
    quiet = client.get("/console/").content.decode()
    assert 'href="/console/alerts/"' in quiet and "No open alerts" in quiet
    critical = open_fault(alpha)
    site_fault(alpha.rack.site, "warn", FaultSeverity.WARNING)
    site_fault(alpha.rack.site, "info", FaultSeverity.INFO)  # not on the badge
    open_fault(fleet.servers["beta"])  # another tenant's
    badge = client.get("/console/alerts/badge/").content.decode()
    assert "2 open faults · 1 critical" in badge and 'class="badge critical"' in badge
    # every count of faults leads to them: the fleet table's and the server page's
    to_site = f'href="/console/alerts/?site={alpha.rack.site_id}"'
    assert to_site in client.get("/console/", HTTP_HX_REQUEST="true").content.decode()
    assert to_site in client.get(f"/console/ultraservers/{alpha.pk}/").content.decode()
    Fault.objects.filter(pk=critical.pk).update(
        silenced_until=timezone.now() + dt.timedelta(hours=1)
    )
    badge = client.get("/console/alerts/badge/").content.decode()
    assert "1 open fault<" in badge.replace(" ·", "<") or "1 open fault</a>" in badge
    assert 'class="badge warning"' in badge
    # silenced: off the top of the list too, under "Silenced"
    page = client.get("/console/alerts/").content.decode()
    assert page.index(f'id="fault-{critical.pk}"') > page.index('id="section-silenced"')
    # a silence gone by counts again
    Fault.objects.filter(pk=critical.pk).update(
        silenced_until=timezone.now() - dt.timedelta(seconds=1)
    )
    assert "2 open faults" in client.get("/console/alerts/badge/").content.decode()


def test_ingest_writes_last_heartbeat_at_at_most_once_a_minute_per_server(fleet):
    server = fleet.servers["alpha"]
    assert server.last_heartbeat_at is None
    client, _ = agent_client(fleet.sites["alpha"])
    before = timezone.now()
    assert post(client, [server_report(server.serial, 1)]).status_code == 200
    server.refresh_from_db()
    assert server.last_heartbeat_at >= before
    first = server.last_heartbeat_at
    post(client, [server_report(server.serial, 1)])  # a replay is not a heartbeat
    server.refresh_from_db()
    assert server.last_heartbeat_at == first
    # more batches within the minute: the server row is not written again
    for sequence in (2, 3, 4):
        post(client, [server_report(server.serial, sequence)])
    server.refresh_from_db()
    assert server.last_heartbeat_at == first
    latest = ServerTelemetry.objects.get(ultraserver=server)
    assert latest.received_at > first  # the exact clock is the latest row's
    # a minute on, the next batch writes it once more
    a_minute_ago = timezone.now() - dt.timedelta(seconds=61)
    UltraServer.objects.filter(pk=server.pk).update(last_heartbeat_at=a_minute_ago)
    post(client, [server_report(server.serial, 5)])
    server.refresh_from_db()
    assert server.last_heartbeat_at > a_minute_ago + dt.timedelta(seconds=60)
    assert fleet.servers["beta"].last_heartbeat_at is None


def test_the_heartbeat_update_skips_a_row_written_within_the_minute(fleet):
    """The UPDATE's WHERE leaves a row written less than a minute before alone (its value is
    not moved), and writes one older than that, or never written."""
    server, other = fleet.servers["alpha"], fleet.servers["beta"]
    t0 = timezone.now()
    UltraServer.objects.filter(pk=server.pk).update(last_heartbeat_at=t0)
    _heard_from([server.pk, other.pk], t0 + dt.timedelta(seconds=59))
    beats = dict(UltraServer.objects.values_list("pk", "last_heartbeat_at"))
    assert beats[server.pk] == t0 and beats[other.pk] == t0 + dt.timedelta(seconds=59)
    _heard_from([server.pk], t0 + dt.timedelta(seconds=61))
    server.refresh_from_db()
    assert server.last_heartbeat_at == t0 + dt.timedelta(seconds=61)
    _heard_from([server.pk], t0)  # never backwards
    server.refresh_from_db()
    assert server.last_heartbeat_at == t0 + dt.timedelta(seconds=61)


def _server_row(page: str, server) -> str:
    return page.split(f'<tr data-server="{server.pk}">', 1)[1].split("</tr>", 1)[0]


def test_fleet_and_site_pages_show_freshness_and_stale(client, fleet):
    server = fleet.servers["alpha"]
    site = fleet.sites["alpha"]
    quiet = make_server("ALP1-SRV2", rack=make_rack(site, "ALP1-R02"))
    login(client, "alpha-admin")
    agent, _ = agent_client(site)
    post(agent, [server_report(server.serial, 1), server_report(quiet.serial, 1)])
    page = client.get(f"/console/sites/{site.pk}/").content.decode()
    assert "Last heartbeat" in page and "stale</span>" not in page
    assert 'class="fresh fresh"' in page
    # Nothing from one server for longer than the telemetry-stale limit, while the other
    # reports; the agent past the agent-silent limit.
    old = timezone.now() - stale_after() - dt.timedelta(seconds=5)
    ServerTelemetry.objects.filter(ultraserver=quiet).update(ts=old, received_at=old)
    UltraServer.objects.filter(pk=quiet.pk).update(last_heartbeat_at=old - dt.timedelta(minutes=1))
    SiteAgent.objects.filter(site=site).update(last_seen_at=timezone.now() - dt.timedelta(hours=1))
    page = client.get(f"/console/sites/{site.pk}/").content.decode()
    assert _server_row(page, quiet).count('class="fresh stale"') == 2  # sample, heartbeat
    assert 'class="fresh stale"' not in _server_row(page, server)
    assert '<span class="label">stale</span>' in page
    fleet_table = client.get("/console/", HTTP_HX_REQUEST="true").content.decode()
    assert "Agent:" in fleet_table and fleet_table.count('class="fresh stale"') == 1  # the agent
    # nothing from the whole site for the limit: its telemetry is stale too
    ServerTelemetry.objects.filter(ultraserver__rack__site=site).update(received_at=old)
    fleet_table = client.get("/console/", HTTP_HX_REQUEST="true").content.decode()
    assert fleet_table.count('class="fresh stale"') == 2
    # the other site has never reported: "never", not stale
    login(client, "beta-admin")
    assert "never" in client.get("/console/", HTTP_HX_REQUEST="true").content.decode()


def test_the_site_page_says_stale_exactly_when_the_freshness_rule_flags(client, fleet):
    """The page reads the rule's clock (when a sample was received) and its second test (the
    newest sample the limit behind what the site delivered): a backlog still arriving is
    "behind" on the page and no fault; a server silent while the others report is "stale"
    on the page and a ``telemetry-stale`` fault."""
    site, one = fleet.sites["alpha"], fleet.servers["alpha"]
    two = make_server("ALP1-SRV2", rack=make_rack(site, "ALP1-R02"))
    agent, _ = agent_client(site)
    post(agent, [server_report(one.serial, 1), server_report(two.serial, 1)])
    login(client, "alpha-admin")
    limit = stale_after()
    now = timezone.now()
    late = now - limit - dt.timedelta(seconds=30)

    # the backlog: nothing received for the limit, but the samples are as new as delivered
    ServerTelemetry.objects.filter(ultraserver=one).update(ts=late, received_at=late)
    ServerTelemetry.objects.filter(ultraserver=two).update(
        ts=late - dt.timedelta(seconds=5), received_at=late
    )
    assert ingest.check_freshness(site.pk) == (0, 0)
    page = client.get(f"/console/sites/{site.pk}/").content.decode()
    for server in (one, two):
        row = _server_row(page, server)
        assert 'class="fresh behind"' in row and "stale" not in row, row

    # silent: one server sends nothing while the other's samples arrive
    ServerTelemetry.objects.filter(ultraserver=one).update(ts=now, received_at=now)
    assert ingest.check_freshness(site.pk) == (1, 0)
    assert Fault.objects.filter(ultraserver=two, rule=FaultRule.TELEMETRY_STALE).exists()
    page = client.get(f"/console/sites/{site.pk}/").content.decode()
    assert 'class="fresh stale"' in _server_row(page, two)
    assert 'class="fresh fresh"' in _server_row(page, one)
    assert "stale" not in _server_row(page, one)

    # decommissioned: gone for good, so neither the rule nor the page calls it stale
    UltraServer.objects.filter(pk=two.pk).update(lifecycle_state="decommissioned")
    assert ingest.check_freshness(site.pk) == (0, 1)
    page = client.get(f"/console/sites/{site.pk}/").content.decode()
    assert f'<tr data-server="{two.pk}">' not in page
    assert f'<tr data-server="{one.pk}">' in page


def test_the_alerts_page_lists_workflows_waiting_for_a_person_overdue_first(client, fleet):
    """An escalated wait is seen by the provider's staff (every tenant's) on the alerts page;
    a tenant sees its own only."""
    from provisioning.models import Workflow

    alpha, beta = fleet.sites["alpha"], fleet.sites["beta"]
    paused = Workflow.objects.create(
        kind="upgrade", state="paused", site=alpha, state_reason="paused: lunch"
    )
    waiting = Workflow.objects.create(
        kind="upgrade",
        state="running",
        site=beta,
        state_reason="waiting: the site has no tenant-approved maintenance window",
    )
    Workflow.objects.create(kind="upgrade", state="running", site=alpha)  # needs nobody
    login(client, "padmin")
    page = client.get("/console/alerts/").content.decode()
    section = page[page.index('id="workflows-needing-action"') :]
    assert f'id="wf-need-{paused.pk}"' in section and f'id="wf-need-{waiting.pk}"' in section
    assert section.count('id="wf-need-') == 2
    assert "paused: lunch" in section and f'href="/console/workflows/{paused.pk}/"' in section
    login(client, "alpha-admin")
    section = client.get("/console/alerts/").content.decode()
    assert f'id="wf-need-{paused.pk}"' in section and f'id="wf-need-{waiting.pk}"' not in section


def test_an_overdue_wait_is_listed_first_for_the_provider(client, fleet):
    from provisioning.models import Step, Workflow, WorkflowTarget

    site, server = fleet.sites["beta"], fleet.servers["beta"]
    paused = Workflow.objects.create(kind="upgrade", state="paused", site=site)
    overdue = Workflow.objects.create(
        kind="maintain", state="running", site=site, spec={"person_timeout_seconds": 60}
    )
    target = WorkflowTarget.objects.create(workflow=overdue, ultraserver=server, state="running")
    Step.objects.create(
        workflow=overdue,
        target=target,
        name="dispatch",
        seq=1,
        state="waiting",
        started_at=timezone.now() - dt.timedelta(hours=2),
    )
    login(client, "padmin")
    page = client.get("/console/alerts/").content.decode()
    section = page[page.index('id="workflows-needing-action"') :]
    assert section.index(f'id="wf-need-{overdue.pk}"') < section.index(f'id="wf-need-{paused.pk}"')
    row = section.split(f'id="wf-need-{overdue.pk}"', 1)[1].split("</tr>", 1)[0]
    assert "Overdue" in row and "waiting for a technician" in row


@pytest.mark.parametrize("n", [1, 12])
def test_the_refreshing_fragments_cost_a_few_flat_queries(
    client, fleet, n, django_assert_max_num_queries
):
    server = fleet.servers["alpha"]
    for i in range(n):
        site_fault(server.rack.site, f"s{i}", FaultSeverity.WARNING)
    open_fault(server)
    login(client, "alpha-operator")
    client.get("/console/alerts/badge/")  # session, warm
    with django_assert_max_num_queries(5):
        assert client.get("/console/alerts/badge/").status_code == 200
    with django_assert_max_num_queries(6):
        table = client.get("/console/alerts/", HTTP_HX_REQUEST="true")
    assert table.status_code == 200
    assert table.content.decode().count('data-fault="') == n + 1
    assert "<html" not in table.content.decode()  # only the fragment


def test_the_fleet_fragments_freshness_costs_the_same_for_more_sites(client, fleet):
    login(client, "padmin")

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/console/", HTTP_HX_REQUEST="true").status_code == 200
        return len(queries)

    before = count()
    for i in range(3):
        site = make_site(fleet.alpha, f"XT{i}")
        make_server(f"XT{i}-SRV1", rack=make_rack(site, f"XT{i}-R01"))
        agents.issue_agent(site, f"agent-{i}", CTX)
    assert count() == before


def test_silenced_has_one_meaning_for_the_queryset_the_row_the_api_and_its_filter(fleet):
    server = fleet.servers["alpha"]
    now = timezone.now()
    ahead = open_fault(server, silenced_until=now + dt.timedelta(hours=1))
    gone_by = open_fault(server, chip=5, rule=FaultRule.LINK_DOWN, silenced_until=now)
    never = open_fault(server, chip=6, rule=FaultRule.THERMAL_THROTTLE)
    assert set(Fault.objects.silenced(now)) == {ahead}
    assert set(Fault.objects.loud(now)) == {gone_by, never}
    assert [f.silenced for f in (ahead, gone_by, never)] == [True, False, False]
    api = fleet.client("alpha_viewer")
    listed = api.get("/api/v1/faults/", {"silenced": "true"}).json()["results"]
    assert [(f["id"], f["silenced"]) for f in listed] == [(ahead.pk, True)]
    loud = api.get("/api/v1/faults/", {"silenced": "false"}).json()["results"]
    assert {f["id"] for f in loud} == {gone_by.pk, never.pk}
    assert not any(f["silenced"] for f in loud)
