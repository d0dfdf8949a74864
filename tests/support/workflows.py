"""Workflow test helpers: firmware releases, an always-open window, servers put in service."""

import datetime as dt

from factory.catalog.models import UltraServerModel
from factory.inventory import lifecycle
from factory.inventory.services import transition
from provisioning.models import FirmwareRelease, MaintenanceWindow
from tests.support.fleet import CTX
from tests.support.signing import RELEASE_KEY, sign_release, trust


def make_releases() -> dict[str, FirmwareRelease]:
    """Firmware 1.0 (the baseline) and 2.0 for the Trn3 UltraServer, signed by the provider's
    release key, which is a provider trust root for their origin."""
    trn3 = UltraServerModel.objects.get(slug="trn3-ultraserver")
    origin = "https://firmware.provider.example"
    trust(RELEASE_KEY, origin, name="provider-release")
    return {
        "1.0": sign_release(
            FirmwareRelease.objects.create(model=trn3, version="1.0", origin=origin, baseline=True),
            RELEASE_KEY,
        ),
        "2.0": sign_release(
            FirmwareRelease.objects.create(model=trn3, version="2.0", origin=origin),
            RELEASE_KEY,
        ),
    }


def always_open(site, status="approved") -> MaintenanceWindow:
    return MaintenanceWindow.objects.create(
        site=site,
        name="always",
        weekdays=list(range(7)),
        start_time=dt.time(0, 0),
        duration_minutes=1440,
        status=status,
    )


def put_in_service(server, firmware="1.0"):
    for state in (lifecycle.INSTALLING, lifecycle.BURN_IN, lifecycle.READY, lifecycle.IN_SERVICE):
        server = transition(server.pk, state, CTX)
    return transition(server.pk, lifecycle.IN_SERVICE, CTX, fields={"firmware_version": firmware})
