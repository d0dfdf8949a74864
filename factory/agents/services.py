"""The agent command queue: submit, claim (long-poll), complete, expire.

Hardware is touched only through here. Delivery is at most once: a claim is a compare-and-set
under ``SKIP LOCKED``, a claimed command is never handed out again, and a missing result expires
rather than being retried. Callers that need a retry first ask for the real state.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from factory import wire
from factory.agents.choices import CommandState
from factory.agents.models import AgentCommand, SiteAgent
from factory.agents.signals import command_finished
from factory.core.bulk import update_rows
from factory.inventory.lifecycle import InvalidTransition
from tenants.errors import Conflict, FieldError, Invalid
from tenants.process_caps import ProcessCap
from tenants.services import audit
from tenants.services.changes import ChangeContext
from tenants.services.tokens import digest

if TYPE_CHECKING:
    from factory.inventory.models import Site

TOKEN_PREFIX = "aga_"
_SEEN_RESOLUTION = dt.timedelta(seconds=5)
MAX_WAIT_SECONDS = wire.MAX_CLAIM_WAIT_SECONDS
MAX_CLAIM = wire.MAX_CLAIM
#: How long an agent turned away from waiting (every long-poll slot of the process taken) waits
#: before it claims again: short, so a command queued meanwhile waits little longer than it would.
CLAIM_BUSY_RETRY_SECONDS = 1.0
_waiting = ProcessCap()  # long-polls of this process waiting now


def issue_agent(site: Site, name: str, ctx: ChangeContext) -> tuple[SiteAgent, str]:
    """A site's agent credential: returned in clear once, stored as a digest."""
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        agent = SiteAgent(site=site, name=name, prefix=clear[:12], digest=digest(clear))
        agent.full_clean()
        agent.save()
        audit.record_change(ctx, agent, None)
    return agent, clear


def revoke_agent(agent: SiteAgent, ctx: ChangeContext) -> None:
    with transaction.atomic():
        before = audit.snapshot(agent)
        agent.revoked_at = timezone.now()
        agent.save(update_fields=["revoked_at"])
        audit.record_change(ctx, agent, before)


def authenticate_agent(clear: str) -> SiteAgent | None:
    if not clear.startswith(TOKEN_PREFIX):
        return None
    agent = (
        SiteAgent.objects.select_related("site")
        .filter(digest=digest(clear), revoked_at__isnull=True)
        .first()
    )
    if agent is not None:
        seen(agent)
    return agent


def seen(agent: SiteAgent) -> None:
    """Record that the agent is alive; a silent agent marks its site's servers unreachable
    (stale-agent job), and hearing from it again clears that."""
    now = timezone.now()
    if agent.last_seen_at and now - agent.last_seen_at < _SEEN_RESOLUTION:
        return
    SiteAgent.objects.filter(pk=agent.pk).update(last_seen_at=now)
    agent.last_seen_at = now
    from factory.inventory.models import UltraServer

    UltraServer.objects.filter(rack__site_id=agent.site_id, unreachable_since__isnull=False).update(
        unreachable_since=None
    )


_KINDS = frozenset(wire.CommandKind)


def check_params(kind: str, params: Mapping[str, object]) -> None:
    """Raise ``Invalid`` (field ``params``) if ``params`` do not fit ``COMMANDS[kind]``."""
    if kind not in _KINDS:
        raise Invalid(f"{kind!r} is not a command kind.", code="invalid_choice", field="kind")
    spec = wire.COMMANDS[wire.CommandKind(kind)]
    reasons = [
        FieldError("params", "unknown_param", f"{kind} takes no parameter {name!r}.")
        for name in sorted(set(params) - set(spec.params))
    ] + [
        FieldError("params", "missing_param", f"{kind} needs the parameter {name!r}.")
        for name in spec.required
        if params.get(name) is None
    ]
    if reasons:
        raise Invalid(errors=reasons, code=reasons[0].code)


#: What may still be sent to an isolated server (its leak fault open): the power-off itself,
#: and the reads that change nothing. Anything else could power it back on under a leak.
READS_WHILE_ISOLATED = frozenset({wire.CommandKind.QUERY_STATE, wire.CommandKind.INSTALL_CHECK})


def allowed_while_isolated(kind: str, params: Mapping[str, object]) -> bool:
    if kind in READS_WHILE_ISOLATED:
        return True
    return (
        kind == wire.CommandKind.RESET
        and params.get(wire.CommandParam.RESET_TYPE) == wire.ISOLATION_RESET_TYPE
    )


class ServerIsolated(InvalidTransition):
    """409 ``isolated``: the server is powered off under a critical fault (a leak) and takes no
    command that could power it on until the fault is cleared. An ``InvalidTransition`` (its
    state allows no such change), so a workflow step that asks records it as that server's
    failure rather than retrying."""

    def __init__(self, ultraserver_id: int, kind: str) -> None:
        from factory.inventory.models import UltraServer

        serial, since, reason = (
            UltraServer.objects.filter(pk=ultraserver_id)
            .values_list("serial", "isolated_since", "isolation_reason")
            .first()
        ) or (str(ultraserver_id), None, "")
        allowed = ", ".join(sorted(READS_WHILE_ISOLATED))
        Conflict.__init__(
            self,
            f"UltraServer {serial} is isolated since {since:%Y-%m-%d %H:%M:%S}Z ({reason}): "
            f"{kind} refused; only the {wire.ISOLATION_RESET_TYPE} reset, {allowed} are sent "
            "until its fault is cleared"
            if since
            else f"UltraServer {serial} is isolated: {kind} refused",
            code="isolated",
            field="ultraserver",
        )


def submit(
    *,
    site_id: int,
    kind: str,
    ultraserver_id: int | None = None,
    params: dict | None = None,
    timeout_seconds: int = 600,
    requested_by: str = "",
) -> AgentCommand:
    """Queue a command. Runs in the caller's transaction, so the caller can store the command's
    id in the same commit (no command without a record of who asked for it).

    Refused (``Invalid``) unless its parameters are those of the contract's ``CommandSpec``:
    none it does not take, none it cannot do without (absent or None). An agent would only fail
    it later, at the site. Refused (``ServerIsolated``, 409 ``isolated``) for an isolated server
    unless ``allowed_while_isolated``: checked in the statement that queues it, so a server
    being isolated at the same moment gets no command queued behind its power-off."""
    params = params or {}
    check_params(kind, params)
    command = AgentCommand(
        site_id=site_id,
        ultraserver_id=ultraserver_id,
        kind=kind,
        params=params,
        timeout_seconds=timeout_seconds,
        requested_by=requested_by,
    )
    if ultraserver_id is None or allowed_while_isolated(kind, params):
        command.save(force_insert=True)
    elif not _insert_unless_isolated(command, ultraserver_id):
        raise ServerIsolated(ultraserver_id, kind)
    return command


def _insert_unless_isolated(command: AgentCommand, ultraserver_id: int) -> bool:
    """INSERT the command unless its server is isolated, in one statement (no read first: a
    batch of workflow steps reads in a fixed number of statements). False if refused."""
    from factory.inventory.models import UltraServer

    def column(field: object) -> str:
        return connection.ops.quote_name(str(getattr(field, "column", "")))

    fields = AgentCommand._meta.concrete_fields
    values = [f.get_db_prep_save(f.pre_save(command, add=True), connection) for f in fields]
    server = UltraServer._meta
    table, servers = (connection.ops.quote_name(m.db_table) for m in (AgentCommand._meta, server))
    # PostgreSQL types a SELECT's bare parameters as text; SQLite must not cast (its CAST to
    # a datetime column's type is a number).
    typed = connection.vendor == "postgresql"
    placeholders = [f"CAST(%s AS {f.db_type(connection)})" if typed else "%s" for f in fields]
    sql = (
        f"INSERT INTO {table} ({', '.join(column(f) for f in fields)}) "
        f"SELECT {', '.join(placeholders)} "
        f"WHERE NOT EXISTS (SELECT 1 FROM {servers} WHERE {column(server.pk)} = %s "
        f"AND {column(server.get_field('isolated_since'))} IS NOT NULL)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, ultraserver_id])
        inserted = cursor.rowcount == 1
    if inserted:
        command._state.adding, command._state.db = False, connection.alias
    return inserted


def _claim_now(agent: SiteAgent, limit: int) -> list[AgentCommand]:
    now = timezone.now()
    with transaction.atomic():
        commands = list(
            AgentCommand.objects.select_for_update(skip_locked=True)
            .filter(site_id=agent.site_id, state=CommandState.QUEUED)
            .order_by("created_at")[:limit]
        )
        for command in commands:
            command.state = CommandState.CLAIMED
            command.claimed_by = agent
            command.claimed_at = now
            command.result_due_at = now + dt.timedelta(seconds=command.timeout_seconds)
        update_rows(AgentCommand, commands, ["state", "claimed_by", "claimed_at", "result_due_at"])
    return commands


def claim(agent: SiteAgent, *, limit: int = 10, wait_seconds: float = 0.0) -> list[AgentCommand]:
    """Hand the agent up to ``limit`` queued commands of its site, waiting up to ``wait_seconds``
    for one to appear (long-poll)."""
    limit = max(1, min(limit, MAX_CLAIM))
    deadline = time.monotonic() + max(0.0, min(wait_seconds, MAX_WAIT_SECONDS))
    pause = 0.05
    while True:
        commands = _claim_now(agent, limit)
        if commands or time.monotonic() >= deadline:
            return commands
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 0.5)


@dataclass(frozen=True)
class Claimed:
    """A long-poll's answer: the commands handed out, and when it did not wait because this
    process had no thread to spare and nothing was queued, how long before claiming again."""

    commands: list[AgentCommand]
    retry_after_seconds: float | None = None


def claim_waiting(agent: SiteAgent, *, limit: int = 10, wait_seconds: float = 0.0) -> Claimed:
    """``claim`` for a request on a web thread: it waits only while fewer than
    ``AGENT_CLAIM_WAITS_MAX_PER_PROCESS`` long-polls of this process wait, so agents at more
    sites than the process has threads cannot hold them all. Past the cap it answers at once."""
    if wait_seconds <= 0:
        return Claimed(claim(agent, limit=limit))
    if not _waiting.take(int(settings.AGENT_CLAIM_WAITS_MAX_PER_PROCESS)):
        commands = claim(agent, limit=limit)
        return Claimed(commands, None if commands else CLAIM_BUSY_RETRY_SECONDS)
    try:
        return Claimed(claim(agent, limit=limit, wait_seconds=wait_seconds))
    finally:
        _waiting.give_back()


def waiting_in_process() -> int:
    """Long-polls of this process waiting now."""
    return _waiting.open


def complete(
    agent: SiteAgent,
    command_id: uuid.UUID,
    *,
    ok: bool,
    result: dict | None = None,
    error: str = "",
) -> AgentCommand:
    """Record the agent's result. Posting the same result again is harmless (the agent retries
    when a response is lost); a different one for a finished command is a 409."""
    return complete_many(agent, [CommandResult(command_id, ok, result or {}, error)])[0]


@dataclass(frozen=True)
class CommandResult:
    command_id: uuid.UUID | str
    ok: bool
    result: dict = field(default_factory=dict)
    error: str = ""


def complete_many(agent: SiteAgent, results: list[CommandResult]) -> list[AgentCommand]:
    """Record several results in one transaction, all or nothing (the rules of ``complete``
    for each). Whoever waits on them is woken once for the lot, after the commit."""
    with transaction.atomic():
        ids = [str(r.command_id) for r in results]
        commands = {
            str(c.pk): c
            for c in AgentCommand.objects.select_for_update()
            .filter(pk__in=ids, site_id=agent.site_id)
            .order_by("pk")
        }
        now = timezone.now()
        done, finished = [], []
        for r in results:
            command = commands.get(str(r.command_id))
            if command is None:
                raise AgentCommand.DoesNotExist(f"no command {r.command_id} for this site")
            outcome = CommandState.SUCCEEDED if r.ok else CommandState.FAILED
            if command.state in (CommandState.SUCCEEDED, CommandState.FAILED):
                if command.state == outcome and (command.result or {}) == (r.result or {}):
                    done.append(command)
                    continue
                raise Conflict(
                    f"command {command.id} already finished as {command.state}",
                    code="command_finished",
                )
            if command.state in (CommandState.QUEUED, CommandState.CANCELLED):
                raise Conflict(
                    f"command {command.id} is {command.state}: it was never claimed",
                    code="command_not_claimed",
                )
            command.late = command.state == CommandState.EXPIRED
            command.state = outcome
            command.result = r.result or {}
            command.error = r.error[: wire.MAX_ERROR_LENGTH]
            command.completed_at = now
            done.append(command)
            finished.append(command)
        update_rows(AgentCommand, finished, ["state", "result", "error", "late", "completed_at"])
        _record_firmware_inventory(finished, now)
        if finished:
            notice = [(c.id, c.requested_by) for c in finished]
            transaction.on_commit(lambda: command_finished.send(AgentCommand, finished=notice))
    return done


def _record_firmware_inventory(finished: list[AgentCommand], now: dt.datetime) -> None:
    """Every result that read the hardware state back (query-state, install-check, flash, …)
    and carries the BMC's firmware inventory updates the server's per-component versions:
    here, where all results arrive, so no caller can forget it."""
    from factory.inventory.services import record_firmware_inventory

    readings = []
    for command in finished:
        inventory = (command.result or {}).get(wire.HardwareState.FIRMWARE_INVENTORY)
        if command.ultraserver_id is not None and isinstance(inventory, dict):
            readings.append((command.ultraserver_id, inventory))
    if readings:
        record_firmware_inventory(readings, now)


def expire_overdue(now: dt.datetime | None = None) -> int:
    """Claimed commands whose result is overdue become ``expired``; never re-queued. Whoever
    asked is told, after the commit, as for a result (``command_finished``): an isolation
    whose power-off is lost sends it again."""
    now = now or timezone.now()
    with transaction.atomic():
        overdue = list(
            AgentCommand.objects.select_for_update(skip_locked=True)
            .filter(state=CommandState.CLAIMED, result_due_at__lt=now)
            .values_list("pk", "requested_by")
        )
        expired = AgentCommand.objects.filter(
            pk__in=[pk for pk, _ in overdue], state=CommandState.CLAIMED
        ).update(state=CommandState.EXPIRED)
        if overdue:
            transaction.on_commit(lambda: command_finished.send(AgentCommand, finished=overdue))
    return expired


def cancel_queued(command_ids: Iterable[uuid.UUID | str]) -> int:
    """Withdraw commands the agent has not taken yet (e.g. a cancelled workflow)."""
    return AgentCommand.objects.filter(pk__in=command_ids, state=CommandState.QUEUED).update(
        state=CommandState.CANCELLED, completed_at=timezone.now()
    )
