"""A command is queued only with the parameters its contract (``wire.COMMANDS``) names."""

import pytest

from factory.agents import services as agents
from factory.agents.models import AgentCommand
from factory.wire import COMMANDS, CommandKind, CommandParam
from tenants.errors import Invalid

pytestmark = pytest.mark.django_db


def reasons(error: Invalid) -> list[tuple[str | None, str]]:
    return [(e.field, e.code) for e in error.errors]


def test_a_command_with_its_parameters_is_queued(fleet):
    site = fleet.sites["alpha"]
    params = {CommandParam.VERSION: "2026.11.1", CommandParam.ORIGIN: "aws-neuron"}
    command = agents.submit(site_id=site.pk, kind=CommandKind.FLASH_FIRMWARE, params=params)
    assert AgentCommand.objects.get(pk=command.pk).params == params
    assert agents.submit(site_id=site.pk, kind=CommandKind.RESET).params == {}


def test_a_parameter_the_command_does_not_take_is_refused(fleet):
    site = fleet.sites["alpha"]
    with pytest.raises(Invalid) as refused:
        agents.submit(
            site_id=site.pk, kind=CommandKind.DRAIN, params={CommandParam.VERSION: "2026.11.1"}
        )
    assert refused.value.code == "unknown_param"
    assert reasons(refused.value) == [("params", "unknown_param")]
    assert "version" in refused.value.message
    assert not AgentCommand.objects.exists()


@pytest.mark.parametrize("params", [{}, {CommandParam.VERSION: None}])
def test_a_parameter_the_command_cannot_do_without_is_required(fleet, params):
    site = fleet.sites["alpha"]
    with pytest.raises(Invalid) as refused:
        agents.submit(site_id=site.pk, kind=CommandKind.ACTIVATE_BANK, params=params)
    assert reasons(refused.value) == [("params", "missing_param")]
    assert not AgentCommand.objects.exists()


def test_every_reason_is_given_at_once():
    with pytest.raises(Invalid) as refused:
        agents.check_params(CommandKind.FLASH_FIRMWARE, {"colour": "red", "size": 3})
    assert reasons(refused.value) == [
        ("params", "unknown_param"),
        ("params", "unknown_param"),
        ("params", "missing_param"),
    ]


def test_an_unknown_kind_is_refused():
    with pytest.raises(Invalid) as refused:
        agents.check_params("self-destruct", {})
    assert reasons(refused.value) == [("kind", "invalid_choice")]


@pytest.mark.parametrize("kind", list(CommandKind))
def test_the_contracts_own_parameters_pass(kind):
    spec = COMMANDS[kind]
    agents.check_params(kind, dict.fromkeys(spec.params, "x"))
    agents.check_params(kind, dict.fromkeys(spec.required, "x"))
