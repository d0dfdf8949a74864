import pytest

from factory.agents import services as agents
from tests.support.fleet import CTX, make_rack, make_server
from tests.support.hardware import SimHardware
from tests.support.workflows import always_open, make_releases, put_in_service


@pytest.fixture
def hw():
    return SimHardware()


@pytest.fixture
def releases(db):
    return make_releases()


@pytest.fixture
def agent(fleet):
    site_agent, _ = agents.issue_agent(fleet.sites["alpha"], "agent-1", CTX)
    return site_agent


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
