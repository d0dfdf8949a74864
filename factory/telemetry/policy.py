"""The fault policy in force: the wire contract's defaults (``wire.DEFAULT_FAULT_POLICY``) with
the deployment's ``FACTORY_FAULT_POLICY`` setting applied. Checked when the app starts
(``check``), so a typo in a rule's override stops the process instead of leaving the rule at its
default; read once and kept, and read again when a test overrides the setting."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from factory import wire

SETTING = "FACTORY_FAULT_POLICY"


@cache
def current() -> Mapping[wire.FaultRule, wire.RulePolicy]:
    try:
        return wire.fault_policy(getattr(settings, SETTING, None))
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from exc


def check() -> None:
    """Raise ImproperlyConfigured (the rule and key named) if the setting is wrong."""
    current()


def of(rule: str) -> wire.RulePolicy:
    """The rule's policy; a rule the contract does not know is critical and maintained."""
    return current().get(rule) or wire.RulePolicy(  # type: ignore[call-overload]
        wire.Severity.CRITICAL, wire.RuleAction.MAINTAIN
    )


@receiver(setting_changed)
def _forget(setting: str, **kwargs: Any) -> None:
    if setting == SETTING:
        current.cache_clear()
