"""Repeated decisions are counted, not chained one by one: a telemetry poll cannot flood the
access-transparency log, and every count still reaches the hash chain."""

import datetime as dt
import threading

import pytest
from django.db import connections
from django.utils import timezone

from tenants.evidence import services as evidence
from tenants.sovereignty import services
from tenants.sovereignty.models import DecisionRecord
from tenants.sovereignty.models.decisions import REPEATS_RESOURCE, DecisionRepeat
from tenants.sovereignty.services.decisions import close_repeats
from tests.support.fleet import CTX
from tests.support.sovereignty import active_rule


@pytest.fixture(autouse=True)
def ledger_key(settings, tmp_path):
    settings.LEDGER_SIGNING_KEY_FILE = tmp_path / "ledger-signing-key.pem"
    settings.LEDGER_SIGNING_KEY_CREATE = True


def _egress_rule(fleet):
    active_rule(fleet, "telemetry_egress", categories=["power"], destinations=["EU"])


def _chain_problems(tenant_id):
    return [r.problem for r in evidence.verify_logs([tenant_id]) if r.problem]


def _rows(tenant_id):
    return DecisionRecord.objects.filter(tenant_id=tenant_id, action="egress_telemetry")


def _summary_counts(tenant_id):
    """The counts the chain holds: each summary row's "x<N> from ...", and 1 for a row that
    never repeated (no summary)."""
    total = 0
    for record in _rows(tenant_id).exclude(resource_type=REPEATS_RESOURCE):
        tally = DecisionRepeat.objects.get(record=record)
        assert tally.closed
        if tally.summary is None:
            assert tally.count == 1
            total += 1
        else:
            assert tally.summary.resource_id == str(record.pk)
            total += int(tally.summary.resource_repr.split(" ", 1)[0].removeprefix("x"))
    return total


@pytest.mark.django_db
def test_a_thousand_identical_egress_decisions_make_a_bounded_log_that_counts_them_all(fleet):
    _egress_rule(fleet)
    site = fleet.sites["alpha"]
    tenant = site.tenant_id
    for i in range(1000):
        if i == 600:  # the period of the first tally ends: the next decision is chained anew
            DecisionRepeat.objects.filter(tenant_id=tenant).update(
                first_at=timezone.now() - dt.timedelta(hours=2)
            )
        assert services.allowed_telemetry(site, ["power"], site, CTX) == ["power"]
    firsts = _rows(tenant).exclude(resource_type=REPEATS_RESOURCE)
    assert firsts.count() == 2
    assert _rows(tenant).filter(resource_type=REPEATS_RESOURCE).count() == 1  # the lapsed one
    tallies = DecisionRepeat.objects.filter(tenant_id=tenant).order_by("pk")
    assert [t.count for t in tallies] == [600, 400]
    assert sum(t.count for t in tallies) == 1000
    assert close_repeats(tenant) == 0  # the second is still within its period
    assert close_repeats(tenant, everything=True) == 1
    assert _summary_counts(tenant) == 1000
    assert _rows(tenant).count() == 4  # two firsts, two summaries
    assert _chain_problems(tenant) == []


@pytest.mark.django_db
def test_a_change_of_outcome_starts_a_new_row_and_chains_the_count_so_far(fleet, us_site):
    _egress_rule(fleet)
    site = fleet.sites["alpha"]
    tenant = site.tenant_id
    for destination, times, expected in (
        (site, 5, ["power"]),
        (us_site, 3, []),  # denied: a new outcome for the same question
        (site, 4, ["power"]),
        (us_site, 1, []),
    ):
        for _ in range(times):
            assert services.allowed_telemetry(site, ["power"], destination, CTX) == expected
    firsts = list(_rows(tenant).exclude(resource_type=REPEATS_RESOURCE).order_by("chain_seq"))
    assert [r.allowed for r in firsts] == [True, False, True, False]
    assert [r.repeats.count for r in firsts] == [5, 3, 4, 1]
    summaries = list(_rows(tenant).filter(resource_type=REPEATS_RESOURCE).order_by("chain_seq"))
    # each closed tally's summary is chained just before the row that replaced it
    assert [s.resource_id for s in summaries] == [str(r.pk) for r in firsts[:3]]
    assert [s.allowed for s in summaries] == [True, False, True]
    assert summaries[0].resource_repr.startswith("x5 from ")
    assert summaries[0].chain_seq < firsts[1].chain_seq
    assert firsts[-1].repeats.closed is False
    close_repeats(tenant, everything=True)
    assert _summary_counts(tenant) == 13
    assert _chain_problems(tenant) == []


@pytest.mark.django_db
def test_other_decisions_are_still_chained_one_by_one(fleet):
    """A person's or a workload's decision is its own act: never collapsed."""
    site = fleet.sites["alpha"]
    from tenants.sovereignty.core.model import ArtifactFacts

    for _ in range(3):
        services.check_artifact(site, ArtifactFacts("fw-1", "aws-neuron", True), CTX)
    assert DecisionRecord.objects.filter(action="accept_artifact").count() == 3
    assert not DecisionRepeat.objects.exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_workers_polling_at_once_make_one_row():
    from tests.support.fleet import build_fleet

    fleet = build_fleet()
    _egress_rule(fleet)
    site = fleet.sites["alpha"]
    errors: list[Exception] = []
    start = threading.Barrier(4)

    def poll():
        try:
            start.wait()
            for _ in range(25):
                services.allowed_telemetry(site, ["power"], site, CTX)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=poll) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _rows(site.tenant_id).count() == 1
    assert DecisionRepeat.objects.get().count == 100
    assert _chain_problems(site.tenant_id) == []


@pytest.mark.django_db
def test_the_api_lists_a_repeated_decision_once_with_its_count(fleet, us_site):
    _egress_rule(fleet)
    site = fleet.sites["alpha"]
    for _ in range(7):
        services.allowed_telemetry(site, ["power"], site, CTX)
    services.allowed_telemetry(site, ["power"], us_site, CTX)  # denied: closes the tally
    api = fleet.client("alpha_viewer")
    listed = api.get("/api/v1/sovereignty/decisions/", {"action": "egress_telemetry"})
    assert listed.status_code == 200, listed.content
    rows = listed.json()["results"]
    assert [(r["allowed"], r["repeat_count"]) for r in rows] == [(False, 1), (True, 7)]
    assert rows[1]["repeat_until"] is not None and rows[1]["site_code"] == "ALP1"
    summaries = api.get("/api/v1/sovereignty/decisions/", {"resource_type": REPEATS_RESOURCE})
    [summary] = summaries.json()["results"]
    assert summary["resource_repr"].startswith("x7 from ")
    assert summary["resource_id"] == str(rows[1]["id"])


def test_the_csv_export_quotes_what_a_spreadsheet_would_run_as_a_formula(fleet):
    """A principal or reason is whoever asked's words: ``=cmd`` must not reach a spreadsheet
    as a formula, in the API's export as in the console's."""
    import csv
    import io

    from tenants.sovereignty.api.transparency import csv_lines

    site = fleet.sites["alpha"]
    DecisionRecord.objects.create(
        tenant_id=fleet.alpha.pk,
        action="access_site",
        principal="=cmd|' /C calc'!A0",
        resource_type="site",
        resource_id=str(site.pk),
        resource_repr="@SUM(1+1)",
        site_id=site.pk,
        site_owner_id=fleet.alpha.pk,
        allowed=False,
        rule_ids=["-r1"],
        reasons=["+1 reason", "\tplain"],
    )
    response = fleet.client("alpha_viewer").get(
        "/api/v1/sovereignty/decisions/export/", {"format": "csv"}
    )
    assert response.status_code == 200, response.content
    [row] = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert row["principal"] == "'=cmd|' /C calc'!A0"
    assert row["resource_repr"] == "'@SUM(1+1)"
    assert row["rule_ids"] == "'-r1" and row["reasons"] == "'+1 reason; \tplain"
    assert row["repeat_count"] == "1" and row["allowed"] == "false"  # data stays as it is
    text = "".join(csv_lines([{"a": -5, "b": "\rx", "c": "ok"}], ["a", "b", "c"]))
    assert list(csv.reader(io.StringIO(text)))[1] == ["-5", "'\rx", "ok"]
