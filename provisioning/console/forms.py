"""The console's forms: generated from the declared parameters (``provisioning.forms``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms

from provisioning.forms import SpecForm
from provisioning.models import FirmwareRelease
from provisioning.workflows.upgrade import UPGRADE_PARAMS


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
