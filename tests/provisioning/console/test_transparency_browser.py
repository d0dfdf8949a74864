"""The access-transparency log and what is in force now, in a real browser (Chromium via
Playwright) as the bsia tenant's admin: the log's filter form narrows the rows (site column
shown), its CSV link downloads exactly those rows, and on the sovereignty page an access grant
(with the reason the form insists on) and an approved maintenance window are ended, gone from
the page and audited. Screenshots: test-artifacts/console/transparency-*.png."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from provisioning.models import MaintenanceWindow
from tenants.models import AuditEvent
from tenants.sovereignty.models import AccessRequest, DecisionRecord
from tenants.sovereignty.models.decisions import REPEATS_RESOURCE
from tests.provisioning.console.test_browser import (  # noqa: F401 - the shared fixtures
    ARTIFACTS,
    Page,
    browser,
    demo,
)
from tests.provisioning.console.test_transparency_pages import record

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def _grant_in_force(fra) -> AccessRequest:
    people = get_user_model().objects
    now = timezone.now()
    return AccessRequest.objects.create(
        tenant=fra.tenant,
        site=fra,
        person=people.get(username="lukas.hoffmann"),
        requested_by=people.get(username="sofia.lindqvist"),
        reason="swap a coolant pump",
        starts_at=now - dt.timedelta(minutes=5),
        ends_at=now + dt.timedelta(hours=4),
        status="approved",
    )


def _table_rows(page) -> list[list[str]]:
    rows = page.locator("table.grid tbody tr")
    return [rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count())]


def test_tenant_admin_filters_exports_and_ends_what_is_in_force(demo, browser):  # noqa: F811
    fra = demo["fra"]
    t0 = timezone.now() - dt.timedelta(minutes=30)
    # Three decisions that tell the filters apart: only the first is a denied access_site.
    record(
        fra.tenant_id,
        site=fra,
        when=t0,
        allowed=False,
        principal="mallory.browser",
        reasons=["not cleared for FRA1"],
        rule_ids=["r-browser"],
    )
    record(fra.tenant_id, site=fra, when=t0 + dt.timedelta(minutes=1), principal="trent.browser")
    record(
        fra.tenant_id,
        site=fra,
        when=t0 + dt.timedelta(minutes=2),
        action="place_asset",
        allowed=False,
        principal="eve.browser",
        resource_type="asset",
        resource_id="4242",
        resource_repr="eve-browser-asset",
    )
    mine = Q(tenant_id=fra.tenant_id) | Q(site_owner_id=fra.tenant_id)
    expected = (
        DecisionRecord.objects.filter(mine, allowed=False, action="access_site")
        .exclude(resource_type=REPEATS_RESOURCE)
        .count()
    )
    assert 1 <= expected < 50, expected  # all on the first page
    grant = _grant_in_force(fra)
    window = MaintenanceWindow.objects.get(site=fra, status="approved")

    tab = Page(browser, demo["url"], "transparency")
    page = tab.page
    tab.login_with_keyboard("anna.schneider")  # bsia's tenant admin
    page.goto(f"{demo['url']}/console/sovereignty/log/")
    headers = page.locator("table.grid thead th").all_inner_texts()
    assert headers[:3] == ["When (UTC)", "Site", "Action"], headers
    everything = page.locator("table.grid tbody").inner_text()
    assert "trent.browser" in everything and "eve.browser" in everything
    assert "✓ allowed" in everything

    # The filter form: denied access_site decisions only.
    form = page.get_by_role("form", name="Filter the log")
    form.get_by_label("Action").select_option("access_site")
    form.get_by_label("Verdict").select_option("denied")
    with page.expect_navigation():
        form.get_by_role("button", name="Filter").click()
    assert "verdict=denied" in page.url and "action=access_site" in page.url, page.url
    assert form.get_by_label("Verdict").input_value() == "denied"  # the form keeps the choice
    rows = _table_rows(page)
    assert len(rows) == expected, rows
    for _when, site, action, _who, _what, verdict, *_ in rows:
        assert action == "access_site" and verdict == "✗ denied", (action, verdict)
        assert site == "FRA1", site  # the site column, filled
    [mallory] = [r for r in rows if r[3] == "mallory.browser"]
    assert mallory[7] == "not cleared for FRA1"
    shown = page.locator("table.grid tbody").inner_text()
    assert "trent.browser" not in shown and "eve.browser" not in shown
    page.screenshot(path=str(ARTIFACTS / "transparency-1-log-filtered.png"), full_page=True)

    # The export link carries the filters: the file holds the same rows.
    with page.expect_download() as download_info:
        page.locator("p.export").get_by_role("link", name="CSV").click()
    download = download_info.value
    assert download.suggested_filename == "access-log.csv"
    assert "verdict=denied" in download.url and "format=csv" in download.url, download.url
    text = Path(download.path()).read_text(encoding="utf-8")
    header = text.splitlines()[0]
    assert header.startswith("id,occurred_at,redacted,") and "site_code" in header, header
    exported = list(csv.DictReader(io.StringIO(text)))
    assert len(exported) == expected, exported
    assert {(r["action"], r["allowed"], r["site_code"]) for r in exported} == {
        ("access_site", "false", "FRA1")
    }
    [row] = [r for r in exported if r["principal"] == "mallory.browser"]
    assert row["reasons"] == "not cleared for FRA1" and row["rule_ids"] == "r-browser"
    assert sorted(r["principal"] for r in exported) == sorted(r[3] for r in rows)

    # The sovereignty page: what is in force now, and ending it.
    page.get_by_role("link", name="Sovereignty", exact=True).click()
    page.wait_for_url(re.compile(r".*/console/sovereignty/$"))
    grants = page.locator("#grants")
    assert f"grant #{grant.pk}" in grants.inner_text()
    revoke = page.get_by_role("button", name=f"Revoke access grant #{grant.pk} (lukas.hoffmann)")
    reason = page.get_by_label(f"Reason to revoke grant #{grant.pk}")
    page.screenshot(path=str(ARTIFACTS / "transparency-2-in-force.png"), full_page=True)
    revoke.click()  # no reason: the browser does not send the form
    assert reason.evaluate("el => el.validity.valueMissing")
    assert re.search(r"/console/sovereignty/$", page.url), page.url
    grant.refresh_from_db()
    assert grant.status == "approved"

    reason.fill("the pump arrived broken")
    with page.expect_navigation():
        revoke.click()
    assert f"Access grant #{grant.pk}: revoked." in page.locator(".messages").inner_text()
    assert f"grant #{grant.pk}" not in page.locator("#grants").inner_text()
    grant.refresh_from_db()
    assert grant.status == "revoked" and grant.close_note == "the pump arrived broken"
    assert grant.closed_by.username == "anna.schneider"
    audit = AuditEvent.objects.filter(
        object_type="sovereignty.accessrequest", object_id=str(grant.pk), source="console"
    ).latest("occurred_at")
    assert audit.actor_username == "anna.schneider", audit.actor_username
    assert DecisionRecord.objects.filter(
        action="lockbox.revoke", tenant_id=fra.tenant_id, resource_id=str(grant.pk)
    ).exists()

    approved = page.locator("#approved-windows")
    assert window.name in approved.inner_text()
    with page.expect_navigation():
        page.get_by_role("button", name=f"Withdraw approval of window {window.name}").click()
    assert "approval withdrawn" in page.locator(".messages").inner_text()
    assert window.name not in page.locator("#approved-windows").inner_text()
    window.refresh_from_db()
    assert window.status == "rejected"
    assert (
        AuditEvent.objects.filter(object_id=str(window.pk), source="console")
        .filter(object_type__endswith="maintenancewindow", actor_username="anna.schneider")
        .exists()
    )
    page.screenshot(path=str(ARTIFACTS / "transparency-3-ended.png"), full_page=True)
    tab.only_talked_to(demo["url"])
    tab.close()
