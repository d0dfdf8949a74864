"""The fault policy: each rule's severity and the action it asks for, from the wire contract's
defaults and the ``FACTORY_FAULT_POLICY`` setting; a warning records, a critical rule drains."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from factory import wire
from factory.inventory.models import Chip, UltraServer
from factory.telemetry import policy
from factory.telemetry.models import Fault
from factory.wire import FaultRule, RuleAction, Severity
from provisioning.models import WorkflowTarget
from tenants.events.models import Event
from tests.support.telemetry import agent_client, post, server_report
from tests.support.workflows import put_in_service


def test_every_rule_has_a_policy_of_three_severities_and_the_sre_defaults():
    assert [s.value for s in Severity] == ["info", "warning", "critical"]
    assert set(wire.DEFAULT_FAULT_POLICY) == set(FaultRule)
    expected = {
        FaultRule.LEAK: ("critical", "isolate"),
        FaultRule.CHIP_DOWN: ("critical", "maintain"),
        FaultRule.ECC_UNCORRECTABLE: ("critical", "maintain"),
        FaultRule.LINK_DOWN: ("critical", "maintain"),
        FaultRule.COOLANT_EXCURSION: ("critical", "maintain"),
        FaultRule.THERMAL_THROTTLE: ("warning", "record"),
        FaultRule.TELEMETRY_STALE: ("warning", "record"),
        FaultRule.AGENT_SILENT: ("warning", "record"),
        FaultRule.FEED_LOSS: ("critical", "record"),
        FaultRule.REPORTED: ("critical", "maintain"),
    }
    got = {r: (p.severity.value, p.action.value) for r, p in wire.DEFAULT_FAULT_POLICY.items()}
    assert got == expected
    assert {FaultRule.LEAK} == wire.ISOLATING_RULES
    assert wire.severity_of(FaultRule.THERMAL_THROTTLE) == Severity.WARNING
    assert not wire.DEFAULT_FAULT_POLICY[FaultRule.AGENT_SILENT].drains
    assert wire.DEFAULT_FAULT_POLICY[FaultRule.LEAK].drains


def test_an_override_changes_only_what_it_names():
    changed = wire.fault_policy(
        {"thermal-throttle": {"severity": "critical", "action": "maintain"}}
    )
    assert changed[FaultRule.THERMAL_THROTTLE] == wire.RulePolicy(
        Severity.CRITICAL, RuleAction.MAINTAIN
    )
    assert changed[FaultRule.CHIP_DOWN] == wire.DEFAULT_FAULT_POLICY[FaultRule.CHIP_DOWN]
    quieter = wire.fault_policy({"leak": {"severity": "warning"}})  # severity only: allowed
    assert quieter[FaultRule.LEAK] == wire.RulePolicy(Severity.WARNING, RuleAction.ISOLATE)
    assert wire.severity_of(FaultRule.LEAK, quieter) == Severity.WARNING


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"thermal-throttling": {"severity": "critical"}}, "'thermal-throttling'"),
        ({"chip-down": {"severity": "major"}}, "['severity']: 'major' is not one of info"),
        ({"chip-down": {"action": "drain"}}, "['action']: 'drain' is not one of record"),
        ({"chip-down": {"severty": "info"}}, "unknown key 'severty'"),
        ({"chip-down": {}}, "give a mapping"),
        ({"chip-down": "critical"}, "give a mapping"),
        ({"chip-down": {"action": "isolate"}}, "isolation is fixed to leak"),
        ({"leak": {"action": "maintain"}}, "isolation is fixed to leak"),
        (["chip-down"], "must be a mapping"),
    ],
)
def test_a_wrong_override_names_the_rule_and_key(overrides, words):
    with pytest.raises(ValueError, match="FACTORY_FAULT_POLICY") as refused:
        wire.fault_policy(overrides)
    assert words in str(refused.value)


def test_a_wrong_setting_stops_startup_with_a_clear_error():
    wrong = override_settings(FACTORY_FAULT_POLICY={"chip-down": {"severity": "major"}})
    with wrong, pytest.raises(ImproperlyConfigured, match=r"\['chip-down'\]\['severity'\]"):
        policy.check()
    policy.check()  # the setting gone, the defaults again


@pytest.fixture
def site(fleet):
    server = put_in_service(fleet.servers["alpha"])
    client, _ = agent_client(fleet.sites["alpha"])
    return client, server


def _throttle(client, server, sequence: int):
    """Chip 5 throttled for 30 s, after a clean report (the rule looks at the change)."""
    throttle = [0.0] * 144
    throttle[5] = 30.0
    post(client, [server_report(server.serial, sequence)])
    return post(client, [server_report(server.serial, sequence + 1, throttle_s=throttle)])


def test_a_warning_records_without_draining_and_a_critical_rule_drains(
    site, django_capture_on_commit_callbacks
):
    client, server = site
    with django_capture_on_commit_callbacks(execute=True):
        assert _throttle(client, server, 1).json()["faults_opened"] == 1
    throttled = Fault.objects.get()
    assert (throttled.rule, throttled.severity, throttled.action) == (
        FaultRule.THERMAL_THROTTLE,
        "warning",
        "recorded",
    )
    server.refresh_from_db()
    assert not server.in_maintenance and server.fault_reason == ""
    assert not WorkflowTarget.objects.filter(ultraserver=server).exists()
    opened = Event.objects.get(kind="fault.opened")
    assert opened.data["severity"] == "warning"

    health = [int(wire.HealthCode.OK)] * 144
    health[17] = int(wire.HealthCode.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        post(client, [server_report(server.serial, 3, health=health)])
    down = Fault.objects.get(rule=FaultRule.CHIP_DOWN)
    held = WorkflowTarget.objects.get(ultraserver=server, active=True)
    assert held.workflow.kind == "maintain"
    assert (down.severity, down.action) == ("critical", "maintenance")
    assert down.action_detail == f"maintain workflow #{held.workflow_id}"
    assert UltraServer.objects.get(pk=server.pk).in_maintenance
    throttled.refresh_from_db()
    assert throttled.action == "recorded"  # the chip's outcome is not the throttling's


def test_a_rule_made_critical_by_the_setting_drains_and_one_made_a_warning_does_not(
    site, django_capture_on_commit_callbacks
):
    client, server = site
    louder = {
        "thermal-throttle": {"severity": "critical", "action": "maintain"},
        "chip-down": {"severity": "info", "action": "record"},
    }
    with override_settings(FACTORY_FAULT_POLICY=louder):
        health = [int(wire.HealthCode.OK)] * 144
        health[9] = int(wire.HealthCode.FAILED)
        with django_capture_on_commit_callbacks(execute=True):
            post(client, [server_report(server.serial, 1, health=health)])
        down = Fault.objects.get(rule=FaultRule.CHIP_DOWN)
        assert (down.severity, down.action) == ("info", "recorded")
        assert not UltraServer.objects.get(pk=server.pk).in_maintenance
        assert Chip.objects.get(ultraserver=server, index=9).health != "failed"
        assert not WorkflowTarget.objects.exists()

        with django_capture_on_commit_callbacks(execute=True):
            _throttle(client, server, 2)
        throttled = Fault.objects.get(rule=FaultRule.THERMAL_THROTTLE)
        assert (throttled.severity, throttled.action) == ("critical", "maintenance")
        assert (
            Event.objects.get(kind="fault.opened", data__rule=FaultRule.THERMAL_THROTTLE).data[
                "severity"
            ]
            == "critical"
        )
    assert UltraServer.objects.get(pk=server.pk).in_maintenance
    assert WorkflowTarget.objects.get(ultraserver=server, active=True).workflow.kind == "maintain"


def test_the_migration_gives_old_faults_their_rules_severity_and_action(fleet):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("factory.telemetry.migrations.0006_fault_attention")
    server, site = fleet.servers["alpha"], fleet.sites["alpha"]
    old = [
        Fault.objects.create(site=site, ultraserver=server, rule=rule, key=rule, detail="old")
        for rule in (FaultRule.THERMAL_THROTTLE, FaultRule.CHIP_DOWN, FaultRule.LEAK)
    ]
    feed = Fault.objects.create(site=site, rule=FaultRule.FEED_LOSS, key="feed", detail="A1")
    migration._backfill(apps, None)
    got = [(f.severity, f.action) for f in Fault.objects.filter(pk__in=[f.pk for f in old])]
    assert sorted(got) == [
        ("critical", "isolated"),
        ("critical", "maintenance"),
        ("warning", "recorded"),
    ]
    feed.refresh_from_db()
    assert (feed.severity, feed.action) == ("critical", "recorded")
