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
FIRMWARE_ORIGIN = "firmware.provider.example"


@transaction.atomic
def load_demo_provisioning() -> None:
    model_ids = set(UltraServer.objects.values_list("model_id", flat=True))
    for model_id in model_ids:
        FirmwareRelease.objects.get_or_create(
            model_id=model_id,
            version=DEMO_FIRMWARE,
            defaults={"origin": FIRMWARE_ORIGIN, "baseline": True},
        )
        FirmwareRelease.objects.get_or_create(
            model_id=model_id, version=NEXT_FIRMWARE, defaults={"origin": FIRMWARE_ORIGIN}
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
