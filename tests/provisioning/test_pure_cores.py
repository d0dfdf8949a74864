"""The lifecycle whitelist and maintenance-window time math: pure, no database."""

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factory.inventory import lifecycle
from factory.inventory.choices import LifecycleState
from provisioning.windows import Window, current_or_next, is_open, next_opening, open_until
from tests.support.purity import imported_modules

UTC = dt.UTC


def test_pure_cores_import_no_django():
    for path in (
        "factory/inventory/lifecycle.py",
        "provisioning/windows.py",
        "provisioning/outcomes.py",
    ):
        assert not any(m.startswith("django") for m in imported_modules(path)), path


def test_whitelist_covers_every_state_and_names_real_states():
    assert set(lifecycle.TRANSITIONS) == set(LifecycleState.values)
    for targets in lifecycle.TRANSITIONS.values():
        assert targets <= set(LifecycleState.values)


def test_every_in_progress_state_has_a_failed_state():
    for state, failed in [
        (lifecycle.INSTALLING, lifecycle.INSTALL_FAILED),
        (lifecycle.BURN_IN, lifecycle.BURN_IN_FAILED),
        (lifecycle.UPGRADING, lifecycle.UPGRADE_FAILED),
        (lifecycle.DRAINING, lifecycle.DRAIN_FAILED),
        (lifecycle.MAINTENANCE, lifecycle.MAINTENANCE_FAILED),
    ]:
        assert lifecycle.can_transition(state, failed)


def test_invalid_transition_names_current_state_and_options():
    with pytest.raises(lifecycle.InvalidTransition) as exc:
        lifecycle.check_transition("SRV-1", lifecycle.PLANNED, lifecycle.IN_SERVICE)
    assert "is 'planned'" in str(exc.value)
    assert "decommissioned, installing" in str(exc.value)
    lifecycle.check_transition("SRV-1", lifecycle.PLANNED, lifecycle.PLANNED)  # no-op is fine


def test_decommissioned_is_final_and_serving_needs_a_drain_first():
    assert lifecycle.TRANSITIONS[lifecycle.DECOMMISSIONED] == frozenset()
    assert not lifecycle.can_transition(lifecycle.IN_SERVICE, lifecycle.MAINTENANCE)
    assert not lifecycle.can_transition(lifecycle.IN_SERVICE, lifecycle.DECOMMISSIONED)


def test_every_state_is_reachable_from_planned():
    seen, todo = {lifecycle.PLANNED}, [lifecycle.PLANNED]
    while todo:
        for nxt in lifecycle.TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(lifecycle.TRANSITIONS)


SUNDAY_NIGHT = Window(frozenset({6}), dt.time(2, 0), dt.timedelta(hours=4), "Europe/Berlin")


def test_window_in_site_local_time():
    # Sunday 2026-11-29 02:00 Berlin (CET, UTC+1) = 01:00 UTC
    assert not is_open(SUNDAY_NIGHT, dt.datetime(2026, 11, 29, 0, 59, tzinfo=UTC))
    assert is_open(SUNDAY_NIGHT, dt.datetime(2026, 11, 29, 1, 0, tzinfo=UTC))
    assert is_open(SUNDAY_NIGHT, dt.datetime(2026, 11, 29, 4, 59, tzinfo=UTC))
    assert not is_open(SUNDAY_NIGHT, dt.datetime(2026, 11, 29, 5, 0, tzinfo=UTC))
    opens, closes = current_or_next(SUNDAY_NIGHT, dt.datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    assert opens == dt.datetime(2026, 11, 29, 1, 0, tzinfo=UTC)
    assert closes - opens == dt.timedelta(hours=4)


def test_window_follows_daylight_saving():
    # Sunday 2026-07-05 02:00 Berlin (CEST, UTC+2) = 00:00 UTC
    assert is_open(SUNDAY_NIGHT, dt.datetime(2026, 7, 5, 0, 0, tzinfo=UTC))
    assert not is_open(SUNDAY_NIGHT, dt.datetime(2026, 7, 4, 23, 59, tzinfo=UTC))


def test_window_across_midnight():
    late = Window(frozenset({5}), dt.time(22, 0), dt.timedelta(hours=6), "UTC")  # Sat 22–04
    assert is_open(late, dt.datetime(2026, 11, 29, 3, 30, tzinfo=UTC))  # Sunday 03:30
    assert not is_open(late, dt.datetime(2026, 11, 29, 4, 0, tzinfo=UTC))
    assert open_until([late], dt.datetime(2026, 11, 28, 23, 0, tzinfo=UTC)) == dt.datetime(
        2026, 11, 29, 4, 0, tzinfo=UTC
    )
    assert next_opening([], dt.datetime(2026, 11, 28, tzinfo=UTC)) is None


@given(
    st.frozensets(st.integers(0, 6), min_size=1),
    st.integers(0, 23),
    st.integers(15, 1440),
    st.datetimes(min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2030, 1, 1)),
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
)
def test_next_opening_is_open_and_nothing_opens_before_it(days, hour, minutes, naive, tz):
    window = Window(days, dt.time(hour, 0), dt.timedelta(minutes=minutes), tz)
    at = naive.replace(tzinfo=UTC)
    opens, closes = current_or_next(window, at)
    assert closes > at and opens < closes
    assert is_open(window, max(opens, at)) or opens > at
