"""Demo data for provisioning: firmware releases (a baseline and a newer build per model in the
demo fleet) and maintenance windows (one approved, one awaiting the tenant). Idempotent."""

from __future__ import annotations

import datetime as dt

from django.db import transaction

from factory.inventory.demo import DEMO_FIRMWARE
from factory.inventory.models import Site, UltraServer
from provisioning.choices import WindowStatus
from provisioning.models import FirmwareRelease, MaintenanceWindow

NEXT_FIRMWARE = "2026.11.0"


def firmware_origin(model_slug: str) -> str:
    """The vendor's release channel: what the demo tenants' provenance rules accept."""
    return "nvidia" if model_slug.startswith("gb") else "aws-neuron"


@transaction.atomic
def load_demo_provisioning() -> None:
    models = set(UltraServer.objects.values_list("model_id", "model__slug"))
    for model_id, slug in models:
        FirmwareRelease.objects.get_or_create(
            model_id=model_id,
            version=DEMO_FIRMWARE,
            defaults={"origin": firmware_origin(slug), "baseline": True},
        )
        FirmwareRelease.objects.get_or_create(
            model_id=model_id, version=NEXT_FIRMWARE, defaults={"origin": firmware_origin(slug)}
        )
    for site in Site.objects.all():
        MaintenanceWindow.objects.get_or_create(
            site=site,
            name="Sunday early",
            defaults={
                "weekdays": [6],
                "start_time": dt.time(2, 0),
                "duration_minutes": 240,
                "status": WindowStatus.APPROVED,
                "proposed_by": "admin",
                "decided_by": "demo",
            },
        )
        MaintenanceWindow.objects.get_or_create(
            site=site,
            name="Weeknights",
            defaults={
                "weekdays": [0, 1, 2, 3],
                "start_time": dt.time(22, 0),
                "duration_minutes": 360,
                "proposed_by": "admin",
            },
        )
