"""The console's access-transparency log (filters, pages, site column, repeat counts, CSV/JSON
export, redaction of another tenant's records at one's own site) and, on the sovereignty page,
what is in force now, which a tenant's admin can end from there (audited)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from django.utils import timezone

from provisioning.models import MaintenanceWindow
from tenants.models import AuditEvent
from tenants.sovereignty import services
from tenants.sovereignty.models import AccessRequest, DecisionRecord
from tests.support.fleet import CTX
from tests.support.sovereignty import active_rule

pytestmark = pytest.mark.django_db

LOG = "/console/sovereignty/log/"
EXPORT = "/console/sovereignty/log/export/"
API_EXPORT = "/api/v1/sovereignty/decisions/export/"


def record(tenant_id, *, site, owner=None, when=None, **fields) -> DecisionRecord:
    values = dict(
        tenant_id=tenant_id,
        action="access_site",
        principal="tech",
        resource_type="site",
        resource_id=str(site.pk),
        resource_repr=site.code,
        site_id=site.pk,
        site_owner_id=owner if owner is not None else tenant_id,
        allowed=True,
        rule_ids=[],
        reasons=[],
    )
    values.update(fields)
    if when is not None:
        values["occurred_at"] = when
    return DecisionRecord.objects.create(**values)


@pytest.fixture
def log(fleet):
    """Alpha's log: its own decisions, one denial by a person, a beta asset at alpha's site,
    and beta's own record at beta's site (never shown to alpha)."""
    alpha, beta = fleet.sites["alpha"], fleet.sites["beta"]
    t0 = timezone.now() - dt.timedelta(days=1)
    record(fleet.alpha.pk, site=alpha, when=t0)
    record(
        fleet.alpha.pk,
        site=alpha,
        when=t0 + dt.timedelta(hours=1),
        allowed=False,
        principal="mallory",
        reasons=["not cleared"],
        rule_ids=["r1"],
    )
    record(
        fleet.beta.pk,
        site=alpha,
        owner=fleet.alpha.pk,
        action="place_asset",
        resource_type="asset",
        resource_id="99",
        resource_repr="beta-secret-genome",
        principal="beta-admin",
        reasons=["beta rule"],
        when=t0 + dt.timedelta(hours=2),
    )
    record(fleet.beta.pk, site=beta, resource_repr="beta-only", when=t0 + dt.timedelta(hours=3))
    return t0


def page(client, user, query="") -> str:
    client.force_login(user)
    response = client.get(LOG + query)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def test_the_log_has_a_site_column_filters_and_redacts_another_tenants_asset(client, fleet, log):
    html = page(client, fleet.people["alpha_admin"])
    assert '<th scope="col">Site</th>' in html and "ALP1" in html
    assert "mallory" in html and "not cleared" in html
    assert "(another tenant&#x27;s asset)" in html and "(redacted)" in html
    assert "beta-secret-genome" not in html and "beta rule" not in html
    assert "beta-only" not in html and "beta-admin" not in html

    denied = page(client, fleet.people["alpha_admin"], "?verdict=denied")
    assert "mallory" in denied and "✓ allowed" not in denied
    by_person = page(client, fleet.people["alpha_admin"], "?person=mallory")
    assert "mallory" in by_person and "(redacted)" not in by_person
    # a person filter never matches another tenant's redacted record: no probing
    assert "(redacted)" not in page(client, fleet.people["alpha_admin"], "?person=beta-admin")
    by_action = page(client, fleet.people["alpha_admin"], "?action=place_asset")
    assert "(redacted)" in by_action and "mallory" not in by_action
    after = (log + dt.timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    late = page(client, fleet.people["alpha_admin"], f"?since={after}")
    assert "(redacted)" in late and "mallory" not in late
    assert "No decisions match" in page(client, fleet.people["alpha_admin"], "?site=BET1")
    assert "mallory" in page(client, fleet.people["alpha_admin"], "?site=alp1")


def test_a_bad_filter_value_is_a_400_naming_the_field(client, fleet, log):
    client.force_login(fleet.people["alpha_admin"])
    response = client.get(LOG + "?verdict=maybe")
    assert response.status_code == 400
    assert "<strong>verdict</strong>" in response.content.decode()
    bad_time = client.get(LOG + "?until=yesterday")
    assert bad_time.status_code == 400 and "<strong>until</strong>" in bad_time.content.decode()
    # one pair of time filters, the API's since/until: the duplicate pair is gone
    api = fleet.client("alpha_admin").get(
        "/api/v1/sovereignty/decisions/", {"occurred_after": "2026-12-01T00:00:00Z"}
    )
    assert api.status_code == 400 and "occurred_after" in api.content.decode()


def test_pages_of_fifty(client, fleet):
    site = fleet.sites["alpha"]
    for i in range(120):
        record(
            fleet.alpha.pk,
            site=site,
            resource_repr=f"row-{i:03d}",
            when=timezone.now() - dt.timedelta(minutes=i),
        )
    first = page(client, fleet.people["alpha_admin"])
    assert "row-000" in first and "row-049" in first and "row-050" not in first
    assert "Page 1 of 3 (120 rows)" in first and 'rel="next"' in first
    third = page(client, fleet.people["alpha_admin"], "?verdict=allowed&page=3")
    assert "row-100" in third and "row-119" in third and "row-099" not in third
    assert "Page 3 of 3" in third and "verdict=allowed&amp;page=2" in third


def test_repeated_egress_decisions_show_as_one_row_with_a_count(client, fleet):
    active_rule(fleet, "telemetry_egress", categories=["power"], destinations=["EU"])
    site = fleet.sites["alpha"]
    for _ in range(37):
        services.allowed_telemetry(site, ["power"], site, CTX)
    html = page(client, fleet.people["alpha_admin"], "?action=egress_telemetry")
    assert html.count("power telemetry") == 1
    until = timezone.now().strftime("%H:")
    assert "×37 until " + until in html


def test_export_csv_and_json_keep_filters_scope_and_redaction(client, fleet, log):
    client.force_login(fleet.people["alpha_admin"])
    response = client.get(EXPORT + "?format=csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 3
    assert {r["site_code"] for r in rows} == {"ALP1"}
    redacted = [r for r in rows if r["redacted"] == "true"]
    assert len(redacted) == 1 and redacted[0]["resource_repr"] == "(another tenant's asset)"
    assert redacted[0]["principal"] == "" and redacted[0]["reasons"] == ""
    assert all("beta" not in value for r in rows for value in r.values())
    denied = [r for r in rows if r["allowed"] == "false"]
    assert denied[0]["reasons"] == "not cleared" and denied[0]["repeat_count"] == "1"

    as_json = client.get(EXPORT + "?format=json&verdict=denied")
    assert as_json["Content-Type"] == "application/json"
    data = json.loads(b"".join(as_json.streaming_content))
    assert [d["principal"] for d in data] == ["mallory"]

    assert client.get(EXPORT + "?format=xml").status_code == 400
    html = page(client, fleet.people["alpha_admin"], "?verdict=denied")
    assert f'href="{EXPORT}?verdict=denied&amp;format=csv"' in html


def test_the_api_export_is_scoped_typed_and_redacted(fleet, log):
    api = fleet.client("alpha_viewer")
    response = api.get(API_EXPORT, {"format": "csv", "site": "ALP1"})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    assert "beta-secret-genome" not in text and "beta-only" not in text
    assert text.splitlines()[0].startswith("id,occurred_at,redacted,")
    assert len(text.splitlines()) == 4

    data = json.loads(b"".join(api.get(API_EXPORT, {"format": "json"}).streaming_content))
    assert len(data) == 3 and sum(d["redacted"] for d in data) == 1
    bad = api.get(API_EXPORT, {"format": "xml"})
    assert bad.status_code == 400 and "format" in bad.content.decode()
    bad = api.get(API_EXPORT, {"verdict": "maybe"})
    assert bad.status_code == 400 and "verdict" in bad.content.decode()

    listed = api.get("/api/v1/sovereignty/decisions/", {"verdict": "denied", "person": "mallory"})
    assert listed.status_code == 200, listed.content
    [row] = listed.json()["results"]
    assert row["site_code"] == "ALP1" and row["repeat_count"] == 1 and row["repeat_until"] is None
    provider = fleet.client("provider_admin").get(API_EXPORT, {"format": "json"})
    assert len(json.loads(b"".join(provider.streaming_content))) == 4


def _grant(fleet, reason="pump swap"):
    now = timezone.now()
    return AccessRequest.objects.create(
        tenant=fleet.alpha,
        site=fleet.sites["alpha"],
        person=fleet.people["technician"],
        requested_by=fleet.people["provider_admin"],
        reason=reason,
        starts_at=now - dt.timedelta(minutes=5),
        ends_at=now + dt.timedelta(hours=4),
        status="approved",
    )


def test_revoking_a_grant_from_the_console_ends_access_and_is_audited(client, fleet):
    grant = _grant(fleet)
    lapsed = _grant(fleet, "old swap")
    AccessRequest.objects.filter(pk=lapsed.pk).update(ends_at=timezone.now())
    client.force_login(fleet.people["alpha_admin"])
    html = client.get("/console/sovereignty/").content.decode()
    assert "Access grants in force" in html
    assert f"grant #{grant.pk}<" in html and f"grant #{lapsed.pk}<" not in html
    assert f"Revoke access grant #{grant.pk} " in html

    url = f"/console/sovereignty/grants/{grant.pk}/revoke/"
    refused = client.post(url, {"reason": "  "})
    assert refused.status_code == 400
    assert "<strong>reason</strong>: reason is required" in refused.content.decode()
    grant.refresh_from_db()
    assert grant.status == "approved"

    done = client.post(url, {"reason": "the job is cancelled"}, follow=True)
    assert f"Access grant #{grant.pk}: revoked." in done.content.decode()
    grant.refresh_from_db()
    assert grant.status == "revoked" and grant.close_note == "the job is cancelled"
    assert AuditEvent.objects.filter(
        object_type="sovereignty.accessrequest", object_id=str(grant.pk), source="console"
    ).exists()
    assert DecisionRecord.objects.filter(action="lockbox.revoke", tenant_id=fleet.alpha.pk).exists()
    assert f"grant #{grant.pk}<" not in done.content.decode()

    # a viewer sees the grant but cannot revoke it; another tenant's admin does not see it
    other = _grant(fleet, "second swap")
    client.force_login(fleet.people["alpha_viewer"])
    assert (
        f"Revoke access grant #{other.pk} "
        not in client.get("/console/sovereignty/").content.decode()
    )
    assert (
        client.post(f"/console/sovereignty/grants/{other.pk}/revoke/", {"reason": "x"}).status_code
        == 403
    )
    client.force_login(fleet.people["beta_admin"])
    assert (
        client.post(f"/console/sovereignty/grants/{other.pk}/revoke/", {"reason": "x"}).status_code
        == 404
    )


def test_withdrawing_an_approved_window_from_the_console(client, fleet):
    window = MaintenanceWindow.objects.create(
        site=fleet.sites["alpha"],
        name="tuesday nights",
        weekdays=[1],
        start_time=dt.time(1, 0),
        duration_minutes=120,
        status="approved",
        decided_by="alpha-admin",
    )
    client.force_login(fleet.people["alpha_admin"])
    html = client.get("/console/sovereignty/").content.decode()
    assert (
        "Approved maintenance windows" in html
        and "Withdraw approval of window tuesday nights" in html
    )
    done = client.post(
        f"/console/sovereignty/maintenance-windows/{window.pk}/withdraw/", follow=True
    )
    assert "approval withdrawn" in done.content.decode()
    window.refresh_from_db()
    assert window.status == "rejected"
    assert AuditEvent.objects.filter(object_id=str(window.pk), source="console").exists()


def test_the_console_csv_export_quotes_a_formula(client, fleet):
    record(fleet.alpha.pk, site=fleet.sites["alpha"], principal='=HYPERLINK("x")')
    client.force_login(fleet.people["alpha_admin"])
    response = client.get(EXPORT + "?format=csv")
    [row] = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert row["principal"] == '\'=HYPERLINK("x")'
