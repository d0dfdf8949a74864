"""The lockbox's pure rules (no Django): what a policy asks, how votes count, where a person may
be, and what a request's status is at a moment."""

import datetime as dt

from tenants.sovereignty.core import lockbox as lb

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
TWO_OF_THREE = lb.Requirement(lb.Approval.N_OF_M, 2, frozenset({1, 2, 3}))


def test_the_most_specific_entry_wins_and_the_default_is_secure():
    policy = lb.Policy(
        entries=(
            lb.Entry(lb.ANY, lb.Scope.FIRMWARE, lb.Approval.NEVER),
            lb.Entry(lb.Justification.PRODUCTION_ALERT, lb.ANY, lb.Approval.PRE_APPROVED),
            lb.Entry(
                lb.Justification.PRODUCTION_ALERT,
                lb.Scope.FIRMWARE,
                lb.Approval.N_OF_M,
                2,
                (1, 2, 3),
            ),
        )
    )
    assert lb.requirement(policy, "production_alert", "firmware") == TWO_OF_THREE
    assert lb.requirement(policy, "production_alert", "remote_hands").approval == "pre_approved"
    assert lb.requirement(policy, "customer_support", "firmware").approval == "never"
    assert lb.requirement(policy, "customer_support", "physical_repair").approval == "one"
    default = lb.Policy()
    assert lb.requirement(default, "legal_request", "read_diagnostics").approval == "never"
    assert not default.emergency_codes and default.physical_in_site_country


def test_n_minus_one_approvals_do_not_open_and_the_nth_does():
    assert lb.tally(TWO_OF_THREE, [(1, True)]) == lb.Status.PENDING
    assert lb.tally(TWO_OF_THREE, [(1, True), (9, True)]) == lb.Status.PENDING  # 9 not named
    assert lb.tally(TWO_OF_THREE, [(1, True), (1, True)]) == lb.Status.PENDING  # same person
    assert lb.tally(TWO_OF_THREE, [(1, True), (3, True)]) == lb.Status.APPROVED
    assert lb.tally(TWO_OF_THREE, [(1, True), (2, False)]) == lb.Status.REJECTED
    one = lb.Requirement(lb.Approval.ONE)
    assert lb.tally(one, [(7, True)]) == lb.Status.APPROVED
    assert not TWO_OF_THREE.may_vote(9, is_tenant_admin=True)
    assert not one.may_vote(7, is_tenant_admin=False)


def test_location_fails_closed():
    policy = lb.Policy(office_countries=frozenset({"DE", "AT"}))
    assert lb.location_problem(policy, "DE", "DE", "DE") is None
    assert "FR" in lb.location_problem(policy, "DE", "DE", "FR")
    assert "not stated" in lb.location_problem(policy, "DE", "DE", "")
    assert "US" in lb.location_problem(policy, "DE", "US", "DE")
    assert lb.location_problem(lb.Policy(physical_in_site_country=False), "DE", "", "US") is None


def test_status_at_a_moment_is_the_same_for_a_read_and_the_beat_job():
    hour = dt.timedelta(hours=1)
    pending = {"answer_by": NOW + hour, "ends_at": NOW + 3 * hour}
    assert lb.effective_status("pending", NOW, **pending) == lb.Status.PENDING
    assert lb.effective_status("pending", NOW + hour, **pending) == lb.Status.EXPIRED
    assert lb.effective_status("approved", NOW + hour, **pending) == lb.Status.APPROVED
    assert lb.effective_status("approved", NOW + 3 * hour, **pending) == lb.Status.ENDED
    assert lb.effective_status("revoked", NOW + 3 * hour, **pending) == lb.Status.REVOKED
    window = {"starts_at": NOW, "ends_at": NOW + hour, "answer_by": None}
    assert lb.covers("approved", NOW, granted_scope="firmware", scope="firmware", **window)
    assert not lb.covers("approved", NOW, granted_scope="firmware", scope="remote_hands", **window)
    assert not lb.covers("revoked", NOW, granted_scope="firmware", scope="firmware", **window)
    assert not lb.covers(
        "approved", NOW + hour, granted_scope="firmware", scope="firmware", **window
    )


def test_policy_entries_that_cannot_work_are_named():
    entry = lb.Entry("bogus", "physical_repair", lb.Approval.N_OF_M, 3, (1, 2))
    problems = {(field, code) for field, code, _ in lb.entry_problems(entry, {1})}
    assert problems == {
        ("justification", "unknown"),
        ("approvers", "not_tenant_admin"),
        ("n", "out_of_range"),
    }
    assert lb.policy_from({"break_glass_minutes": 9999}).break_glass_minutes == 240
