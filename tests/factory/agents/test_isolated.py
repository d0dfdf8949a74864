"""While a server is isolated (a leak fault open) the command queue refuses it everything that
could power it back on: 409 ``isolated``, nothing queued. Its power-off and the reads that
change nothing still go."""

from __future__ import annotations

import pytest
from django.utils import timezone

from factory.agents import services as agents
from factory.agents.models import AgentCommand
from factory.inventory.models import UltraServer
from factory.wire import CommandKind, CommandParam
from tenants.errors import Conflict

pytestmark = pytest.mark.django_db


@pytest.fixture
def isolated(fleet):
    server = fleet.servers["alpha"]
    UltraServer.objects.filter(pk=server.pk).update(
        isolated_since=timezone.now(), isolation_reason="power-off pending: Leak (fault #7)"
    )
    return server


def send(server, kind: str, **params) -> AgentCommand:
    return agents.submit(
        site_id=server.rack.site_id, kind=kind, ultraserver_id=server.pk, params=params
    )


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        (CommandKind.DRAIN, {}),
        (CommandKind.UNDRAIN, {}),
        (CommandKind.BURN_IN, {}),
        (CommandKind.FLASH_FIRMWARE, {CommandParam.VERSION: "2.0"}),
        (CommandKind.ACTIVATE_BANK, {CommandParam.VERSION: "1.0"}),
        (CommandKind.RESET, {}),  # ForceRestart: powers it on
        (CommandKind.RESET, {CommandParam.RESET_TYPE: "On"}),
    ],
)
def test_a_command_that_could_power_it_on_is_refused(isolated, kind, params):
    with pytest.raises(Conflict) as refused:
        send(isolated, kind, **params)
    assert refused.value.code == "isolated"
    assert [(e.field, e.code) for e in refused.value.errors] == [("ultraserver", "isolated")]
    assert isolated.serial in refused.value.message and "fault #7" in refused.value.message
    assert not AgentCommand.objects.exists()


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        (CommandKind.RESET, {CommandParam.RESET_TYPE: "ForceOff"}),
        (CommandKind.QUERY_STATE, {}),
        (CommandKind.INSTALL_CHECK, {}),
    ],
)
def test_the_power_off_and_reads_still_go(isolated, kind, params):
    command = send(isolated, kind, **params)
    assert AgentCommand.objects.get(pk=command.pk).kind == kind


def test_a_server_not_isolated_takes_any_command(fleet):
    server = fleet.servers["alpha"]
    command = send(server, CommandKind.FLASH_FIRMWARE, **{CommandParam.VERSION: "2.0"})
    stored = AgentCommand.objects.get(pk=command.pk)
    assert (stored.params, stored.state, stored.timeout_seconds) == (
        {CommandParam.VERSION: "2.0"},
        "queued",
        600,
    )
    assert stored.created_at is not None and stored.created_at == command.created_at
    # Once lifted, the same command goes again.
    UltraServer.objects.filter(pk=server.pk).update(isolated_since=timezone.now())
    with pytest.raises(Conflict):
        send(server, CommandKind.DRAIN)
    UltraServer.objects.filter(pk=server.pk).update(isolated_since=None)
    assert send(server, CommandKind.DRAIN).kind == CommandKind.DRAIN


def test_the_refusal_is_a_409_naming_isolated_through_the_api(fleet, isolated):
    """The API that queues a command for a server answers with the error body, not a 500."""
    from factory.core.errors import api_exception_handler  # the one mapping to HTTP

    with pytest.raises(Conflict) as refused:
        send(isolated, CommandKind.DRAIN)
    response = api_exception_handler(refused.value, {})
    assert response is not None and response.status_code == 409
    assert response.data["code"] == "isolated"
    assert response.data["errors"][0]["field"] == "ultraserver"
