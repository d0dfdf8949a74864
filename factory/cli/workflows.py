"""``workflow``: start, watch, pause, resume, cancel, give a manual step its input, and read a
workflow's steps, targets and history (``/api/v1/workflows/``)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from factory.cli import values
from factory.cli.client import ApiError, Client, Unreachable
from factory.cli.progress import FINISHED, exit_code, view_for
from factory.cli.resources import lookup_id
from factory.cli.session import (
    EXIT_TIMEOUT,
    OUTPUT_OPTION,
    Session,
    emit,
    note,
    pass_session,
)

WORKFLOWS = "workflows/"
SCHEMA = "/api/schema/"
#: How long a watch rides out a server that does not answer (a restart, a deploy).
PATIENCE_SECONDS = 120.0


def detail(workflow_id: int) -> str:
    return f"{WORKFLOWS}{workflow_id}/"


def spec_properties(client: Client) -> dict[str, Any]:
    """What each spec parameter is, from the served OpenAPI schema (the declarations the
    service checks against), so ``-p batch_size=3`` is sent as a number and
    ``-p firmware_version=2.0`` as a string. Empty if the schema cannot be had."""
    try:
        document = client.get(SCHEMA, {"format": "json"})
    except ApiError:
        return {}
    if not isinstance(document, dict):
        return {}
    for component in ("WorkflowCreateRequest", "WorkflowCreate"):  # split request or not
        found = values.schema_properties(document, component, "spec")
        if found:
            return found
    return {}


@click.group()
def workflow() -> None:
    """Start and steer workflows (deploy, upgrade, maintain)."""


@workflow.command()
@click.argument("kind", type=click.Choice(["deploy", "upgrade", "maintain"]))
@click.option("--site", help="Every UltraServer of this site (id or code).")
@click.option("--rack", "racks", multiple=True, help="Only these racks (id or name); repeat.")
@click.option(
    "-u", "--ultraserver", "servers", multiple=True, help="These UltraServers (id or serial)."
)
@click.option("--model", "models", multiple=True, help="Only these models (id or slug).")
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A spec parameter (firmware_version=2.0, batch_size=3); see: workflow params.",
)
@click.option("--spec", "spec_json", help="The whole spec as a JSON object (-p adds to it).")
@click.option("--reason", default="", help="Why: shown in the history and the audit log.")
@click.option("--idempotency-key", help="The same key again returns the same workflow.")
@click.option("--watch", "then_watch", is_flag=True, help="Then watch it to its end.")
@click.option("--interval", type=click.FloatRange(0.2), default=1.0, show_default=True)
@click.option("--timeout", type=click.FloatRange(1), help="Stop watching after SECONDS.")
@OUTPUT_OPTION
@pass_session
def start(
    session: Session,
    kind: str,
    site: str | None,
    racks: tuple[str, ...],
    servers: tuple[str, ...],
    models: tuple[str, ...],
    params: tuple[str, ...],
    spec_json: str | None,
    reason: str,
    idempotency_key: str | None,
    then_watch: bool,
    interval: float,
    timeout: float | None,
    fmt: str,
) -> None:
    """Start a KIND workflow over the UltraServers named (POST /api/v1/workflows/)."""
    client = session.client()
    targets: dict[str, Any] = {}
    if servers:
        targets["ultraservers"] = [
            lookup_id(client, "ultraservers/", "serial", s, "ultraserver") for s in servers
        ]
    if site:
        targets["site"] = lookup_id(client, "sites/", "code", site, "site")
    if racks:
        targets["racks"] = [lookup_id(client, "racks/", "name", r, "rack") for r in racks]
    if models:
        targets["models"] = [
            lookup_id(client, "catalog/ultraserver-models/", "slug", m, "model") for m in models
        ]
    spec: dict[str, Any] = {}
    if spec_json:
        try:
            spec = json.loads(spec_json)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--spec") from None
        if not isinstance(spec, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--spec")
    if params:
        try:
            given = values.pairs(params)
        except values.BadPair as exc:
            raise click.BadParameter(str(exc), param_hint="--param") from None
        # Only a value that could be read two ways (2.0: a number, or a version string?) needs
        # the schema's word on its type; fetching the schema takes a moment.
        ambiguous = any(not isinstance(values.loose(v), str) for _, v in given)
        known = spec_properties(client) if ambiguous else {}
        spec.update({k: values.typed(v, known.get(k)) for k, v in given})
    body: dict[str, Any] = {"kind": kind, "targets": targets, "reason": reason}
    if spec_json or params:
        body["spec"] = spec
    if idempotency_key:
        body["idempotency_key"] = idempotency_key
    created = client.post(WORKFLOWS, body)
    if not then_watch:
        emit(created, fmt, columns=_columns(fmt))
        return
    note(f"Started workflow {created['id']} ({kind}).")
    raise click.exceptions.Exit(watch_until_done(client, created["id"], interval, timeout, fmt))


def _columns(fmt: str) -> list[str] | None:
    """A started or steered workflow shows what matters in a table, all of it otherwise."""
    if fmt != "table":
        return None
    return ["id", "kind", "state", "state_reason", "site_code", "spec", "progress", "created_at"]


def watch_until_done(
    client: Client, workflow_id: int, interval: float, timeout: float | None, fmt: str
) -> int:
    """Poll the workflow until it has finished, showing its progress; its exit code. A server
    that stops answering is waited for (``PATIENCE_SECONDS``); a refusal ends the watch."""
    # With -o json/yaml the answer (the final workflow) owns stdout; progress goes to stderr.
    stream = sys.stdout if fmt == "table" else sys.stderr
    view = view_for(stream)
    deadline = time.monotonic() + timeout if timeout else None
    silent_since: float | None = None
    workflow_body: dict[str, Any] | None = None
    try:
        while True:
            try:
                workflow_body = client.get(detail(workflow_id))
                silent_since = None
            except Unreachable as exc:
                silent_since = silent_since or time.monotonic()
                if time.monotonic() - silent_since > PATIENCE_SECONDS:
                    raise
                note(f"no answer ({exc.reason}); still watching")
            except ApiError as exc:
                if exc.status < 500 and exc.status != 429:
                    raise
                note(f"the server answered {exc}; still watching")
            if workflow_body is not None:
                view.update(workflow_body)
                if workflow_body.get("state") in FINISHED:
                    break
            if deadline is not None and time.monotonic() > deadline:
                view.close()
                note(f"gave up after {timeout:g}s; workflow {workflow_id} goes on")
                return EXIT_TIMEOUT
            time.sleep(interval)
    except KeyboardInterrupt:
        view.close()
        note(f"stopped watching; workflow {workflow_id} goes on")
        raise
    finally:
        view.close()  # the terminal gets its cursor back, whatever ended the watch
    assert workflow_body is not None
    state = str(workflow_body.get("state"))
    if fmt != "table":
        emit(workflow_body, fmt)
    else:
        why = f": {workflow_body['state_reason']}" if workflow_body.get("state_reason") else ""
        click.echo(f"workflow {workflow_id} {state}{why}")
    return exit_code(state)


def _workflow_id(value: str) -> int:
    if not value.isdigit():
        raise click.BadParameter(f"{value!r} is no workflow id", param_hint="ID")
    return int(value)


@workflow.command()
@click.argument("workflow_id", metavar="ID")
@click.option("--interval", type=click.FloatRange(0.2), default=1.0, show_default=True)
@click.option("--timeout", type=click.FloatRange(1), help="Stop watching after SECONDS.")
@OUTPUT_OPTION
@pass_session
def watch(
    session: Session, workflow_id: str, interval: float, timeout: float | None, fmt: str
) -> None:
    """Follow a workflow to its end with a progress bar. Exits 0 if it succeeded, 1 if it
    failed or was cancelled, 4 on --timeout."""
    code = watch_until_done(session.client(), _workflow_id(workflow_id), interval, timeout, fmt)
    raise click.exceptions.Exit(code)


def _steer(session: Session, workflow_id: str, action: str, body: dict[str, Any], fmt: str) -> None:
    answer = session.client().post(f"{detail(_workflow_id(workflow_id))}{action}/", body)
    emit(answer, fmt, columns=_columns(fmt))


@workflow.command()
@click.argument("workflow_id", metavar="ID")
@click.option("--reason", required=True, help="Why (required; kept in the history).")
@OUTPUT_OPTION
@pass_session
def pause(session: Session, workflow_id: str, reason: str, fmt: str) -> None:
    """Pause a running workflow: steps in flight finish, no new ones start."""
    _steer(session, workflow_id, "pause", {"reason": reason}, fmt)


@workflow.command()
@click.argument("workflow_id", metavar="ID")
@click.option("--max-failures", type=int, help="A new failure budget: failed servers allowed.")
@click.option("--max-failure-pct", type=float, help="A new failure budget, in percent.")
@OUTPUT_OPTION
@pass_session
def resume(
    session: Session,
    workflow_id: str,
    max_failures: int | None,
    max_failure_pct: float | None,
    fmt: str,
) -> None:
    """Resume a paused workflow, optionally with a new failure budget."""
    body: dict[str, Any] = {}
    if max_failures is not None:
        body["max_failures"] = max_failures
    if max_failure_pct is not None:
        body["max_failure_pct"] = max_failure_pct
    _steer(session, workflow_id, "resume", body, fmt)


@workflow.command()
@click.argument("workflow_id", metavar="ID")
@click.option("--reason", required=True, help="Why (required; kept in the history).")
@OUTPUT_OPTION
@pass_session
def cancel(session: Session, workflow_id: str, reason: str, fmt: str) -> None:
    """Cancel a workflow: servers in flight finish, the others are not touched."""
    _steer(session, workflow_id, "cancel", {"reason": reason}, fmt)


@workflow.command("input")
@click.argument("workflow_id", metavar="ID")
@click.option("--step", required=True, help="The waiting manual step (dispatch, repair).")
@click.option("-u", "--ultraserver", type=click.IntRange(1), help="Its server, if several wait.")
@click.option(
    "-d",
    "--data",
    "data",
    multiple=True,
    metavar="KEY=VALUE",
    help="What the step needs (technician=7, from_country=DE, no_parts_needed=true).",
)
@OUTPUT_OPTION
@pass_session
def provide_input(
    session: Session,
    workflow_id: str,
    step: str,
    ultraserver: int | None,
    data: tuple[str, ...],
    fmt: str,
) -> None:
    """Give a waiting manual step its input."""
    try:
        fields = {key: values.loose(value) for key, value in values.pairs(data)}
    except values.BadPair as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from None
    body: dict[str, Any] = {"step": step, "data": fields}
    if ultraserver:
        body["ultraserver"] = ultraserver
    emit(session.client().post(f"{detail(_workflow_id(workflow_id))}input/", body), fmt)


def _sub_list(session: Session, workflow_id: str, part: str, params: list, fmt: str) -> None:
    found, _ = session.client().items(
        f"{detail(_workflow_id(workflow_id))}{part}/", params, limit=None
    )
    emit(found, fmt)


@workflow.command()
@click.argument("workflow_id", metavar="ID")
@click.option("--state", help="Only steps in this state (waiting, failed, ...).")
@OUTPUT_OPTION
@pass_session
def steps(session: Session, workflow_id: str, state: str | None, fmt: str) -> None:
    """A workflow's steps, server by server."""
    _sub_list(session, workflow_id, "steps", [("state", state)] if state else [], fmt)


@workflow.command()
@click.argument("workflow_id", metavar="ID")
@OUTPUT_OPTION
@pass_session
def targets(session: Session, workflow_id: str, fmt: str) -> None:
    """A workflow's UltraServers and how each one went."""
    _sub_list(session, workflow_id, "targets", [], fmt)


@workflow.command()
@click.argument("workflow_id", metavar="ID")
@OUTPUT_OPTION
@pass_session
def history(session: Session, workflow_id: str, fmt: str) -> None:
    """What happened to a workflow, oldest first."""
    _sub_list(session, workflow_id, "history", [], fmt)


def applies_to(description: str) -> tuple[str, dict[str, str]]:
    """A spec parameter's help, and the kinds it applies to with each one's note, read from
    its schema description (``... Applies to: deploy; upgrade (default 10).``)."""
    text, marker, where = description.partition(" Applies to: ")
    if not marker:
        return description, {}
    kinds: dict[str, str] = {}
    for entry in where.rstrip(".").split("; "):
        kind, _, note = entry.partition(" (")
        kinds[kind.strip()] = note.rstrip(")")
    return text, kinds


@workflow.command("params")
@click.argument("kind", required=False, type=click.Choice(["deploy", "upgrade", "maintain"]))
@OUTPUT_OPTION
@pass_session
def spec_params(session: Session, kind: str | None, fmt: str) -> None:
    """The spec parameters a workflow takes (-p KEY=VALUE), from the API's schema."""
    rows = []
    for name, prop in spec_properties(session.client()).items():
        text, kinds = applies_to(str(prop.get("description", "")))
        if kind and kinds and kind not in kinds:
            continue
        where = (
            kinds.get(kind, "")
            if kind
            else "; ".join(f"{k} ({n})" if n else k for k, n in kinds.items())
        )
        rows.append({"name": name, "type": prop.get("type", ""), "applies": where, "help": text})
    if not rows:
        raise click.ClickException("the API's schema declares no spec parameters")
    emit(rows, fmt, columns=["name", "type", "applies", "help"], width=300)
