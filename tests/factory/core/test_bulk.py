"""update_rows: one statement writes each row's own values, types intact."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from factory.agents import services as agents
from factory.agents.models import AgentCommand
from factory.core.bulk import update_rows
from factory.wire import CommandKind
from tests.support.fleet import CTX

pytestmark = pytest.mark.django_db


def test_each_row_gets_its_own_values_in_one_statement(fleet):
    site = fleet.sites["alpha"]
    agent, _ = agents.issue_agent(site, "bulk", CTX)
    commands = [agents.submit(site_id=site.pk, kind=CommandKind.RESET) for _ in range(3)]
    now = timezone.now()
    for i, command in enumerate(commands):
        command.state = ["claimed", "succeeded", "failed"][i]
        command.result = {"n": i, "nested": {"list": [i, "x"]}} if i else {}
        command.claimed_by = agent if i != 1 else None
        command.completed_at = now + dt.timedelta(seconds=i) if i else None
        command.error = f"err {i}'; --" if i == 2 else ""
    with CaptureQueriesContext(connection) as ctx:
        written = update_rows(
            AgentCommand, commands, ["state", "result", "claimed_by", "completed_at", "error"]
        )
    assert written == 3 and len(ctx.captured_queries) == 1
    for command in commands:
        stored = AgentCommand.objects.get(pk=command.pk)
        assert stored.state == command.state
        assert stored.result == command.result
        assert stored.claimed_by_id == command.claimed_by_id
        assert stored.completed_at == command.completed_at
        assert stored.error == command.error
    assert update_rows(AgentCommand, [], ["state"]) == 0
    with pytest.raises(ValueError):
        update_rows(AgentCommand, commands, ["id"])
