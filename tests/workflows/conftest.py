import datetime as dt

import pytest

from factory.agents import services as agents
from factory.catalog.models import UltraServerModel
from factory.inventory import lifecycle
from factory.inventory.services import transition
from provisioning.models import FirmwareRelease, MaintenanceWindow
from tests.fleet import CTX, make_rack, make_server
from tests.workflows.hardware import SimHardware


@pytest.fixture
def hw():
    return SimHardware()


@pytest.fixture
def releases(db):
    return _releases()


def _releases():
    trn3 = UltraServerModel.objects.get(slug="trn3-ultraserver")
    return {
        "1.0": FirmwareRelease.objects.create(
            model=trn3, version="1.0", origin="https://firmware.provider.example", baseline=True
        ),
        "2.0": FirmwareRelease.objects.create(
            model=trn3, version="2.0", origin="https://firmware.provider.example"
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


@pytest.fixture
def agent(fleet):
    site_agent, _ = agents.issue_agent(fleet.sites["alpha"], "agent-1", CTX)
    return site_agent


def put_in_service(server, firmware="1.0"):
    for state in (lifecycle.INSTALLING, lifecycle.BURN_IN, lifecycle.READY, lifecycle.IN_SERVICE):
        server = transition(server.pk, state, CTX)
    return transition(server.pk, lifecycle.IN_SERVICE, CTX, fields={"firmware_version": firmware})


@pytest.fixture
def in_service(fleet, releases):
    """Alpha's site with six in-service Trn3 UltraServers, one per rack, on firmware 1.0, and
    an approved always-open window."""
    site = fleet.sites["alpha"]
    servers = [put_in_service(fleet.servers["alpha"])]
    for i in range(2, 7):
        rack = make_rack(site, f"{site.code}-R{i:02d}")
        servers.append(put_in_service(make_server(f"{site.code}-SRV{i}", rack=rack)))
    always_open(site)
    return servers
