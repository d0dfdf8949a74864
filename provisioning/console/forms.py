"""The console's forms: a rolling upgrade's, generated from the declared parameters
(``provisioning.forms``), a new API token's, and the log-in form."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from provisioning.forms import SpecForm
from provisioning.models import FirmwareRelease
from provisioning.workflows.upgrade import UPGRADE_PARAMS
from tenants.choices import TokenScope
from tenants.services import logins
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


class ConsoleLoginForm(AuthenticationForm):
    """Django's log-in form; while the username is locked out from this address (too many
    failed log-ins, ``tenants.services.logins``) it says so instead of checking the password."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Your username and password did not match.",
        "locked_out": "Too many failed log-ins for this username: try again in %(minutes)s.",
    }

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if username and self.request is not None:
            wait = logins.locked_for(username, logins.client_address(self.request))
            if wait:
                minutes = max(1, math.ceil(wait / 60))
                raise ValidationError(
                    self.error_messages["locked_out"],
                    code="locked_out",
                    params={"minutes": f"{minutes} minute{'s' if minutes != 1 else ''}"},
                )
        return super().clean()
