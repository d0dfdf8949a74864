"""The console's forms: a rolling upgrade's, generated from the declared parameters
(``provisioning.forms``), a new API token's, and the log-in form."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.conf import settings

from provisioning.forms import SpecForm
from provisioning.models import FirmwareRelease
from provisioning.workflows.upgrade import UPGRADE_PARAMS
from tenants.choices import TokenScope
from tenants.forms import LockoutAuthenticationForm
from tenants.services.tokens import MAX_DAYS


class StartUpgradeForm(SpecForm):
    """The few knobs the console offers; the rest keep the upgrade's declared defaults. The
    firmware version is picked from the releases of the chosen servers' models."""

    params = UPGRADE_PARAMS
    spec_names = ("firmware_version", "batch_size", "soak_seconds")

    def __init__(self, *args: Any, releases: Iterable[FirmwareRelease] = (), **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.fields["firmware_version"].widget = forms.Select(
            choices=[
                (r.version, f"{r.version} · {r.model.name}" + (" (baseline)" if r.baseline else ""))
                for r in releases
            ]
        )


class ApiTokenForm(forms.Form):
    """A new API token of one's own: what it is for, what it may do, how long it lives."""

    name = forms.CharField(
        max_length=100,
        label="Name",
        help_text="What the token is for, e.g. the pipeline or the laptop that will use it.",
    )
    scope = forms.ChoiceField(
        choices=TokenScope.choices,
        initial=TokenScope.READ,
        widget=forms.RadioSelect,
        label="Scope",
        help_text="Read: look only. Write: change what your role may change.",
    )
    days = forms.IntegerField(
        min_value=1,
        max_value=MAX_DAYS,
        label="Expires after (days)",
        help_text=f"1 to {MAX_DAYS} days.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.fields["days"].initial = settings.API_TOKEN_DEFAULT_DAYS


class ConsoleLoginForm(LockoutAuthenticationForm):
    """The log-in form in the console's words; a locked-out username is told so, as in the
    admin (``tenants.forms``)."""

    error_messages = {
        **LockoutAuthenticationForm.error_messages,
        "invalid_login": "Your username and password did not match.",
    }
