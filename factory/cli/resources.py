"""``resources``, ``get`` and ``show``: every collection the API root lists, read alike."""

from __future__ import annotations

import click

from factory.cli import names, output, values
from factory.cli.client import Client
from factory.cli.session import OUTPUT_OPTION, Session, emit, note, pass_session


def collection(client: Client, resource: str) -> tuple[str, str]:
    """The endpoint's name and path for ``resource`` as typed (``site``, ``access-requests``)."""
    endpoints = client.endpoints()
    try:
        name = names.resolve(resource, endpoints)
    except names.UnknownResource as exc:
        raise click.BadParameter(str(exc), param_hint="RESOURCE") from None
    return name, endpoints[name]


def lookup_id(client: Client, path: str, field: str, value: str, what: str) -> int:
    """``value`` as an id: itself if it is a number, else the one object of ``path`` whose
    ``field`` it is (a site's code, a server's serial, a rack's name)."""
    if value.isdigit():
        return int(value)
    found, _ = client.items(path, [(field, value)], limit=2)
    if len(found) != 1:
        problem = f"no {what} has {field} {value!r}" if not found else f"{value!r} is ambiguous"
        raise click.BadParameter(problem, param_hint=what)
    return int(found[0]["id"])


@click.command("resources")
@OUTPUT_OPTION
@pass_session
def list_resources(session: Session, fmt: str) -> None:
    """Every collection the API root (GET /api/v1/) lists: what get and show take."""
    endpoints = session.client().endpoints()
    emit([{"name": n, "path": p} for n, p in sorted(endpoints.items())], fmt)


@click.command()
@click.argument("resource")
@click.option(
    "-f",
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="A filter, as the API takes it (state=running, site=FRA1, name__ic=gpu); repeat a "
    "key to OR its values.",
)
@click.option("-q", "--search", help="Free-text search (the API's ?q=).")
@click.option("--ordering", help="Order by these fields (-created_at,name).")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--all", "everything", is_flag=True, help="Every one, page after page.")
@click.option("--columns", help="The table's columns, comma-separated (default: from the data).")
@OUTPUT_OPTION
@pass_session
def get(
    session: Session,
    resource: str,
    filters: tuple[str, ...],
    search: str | None,
    ordering: str | None,
    limit: int,
    everything: bool,
    columns: str | None,
    fmt: str,
) -> None:
    """List RESOURCE (sites, ultraservers, workflows, access-requests, ...), filtered."""
    client = session.client()
    name, path = collection(client, resource)
    if name.endswith("/watch"):  # a stream, not a list
        raise click.UsageError(f"{name} is a stream of events: factoryctl events tail")
    try:
        params = values.pairs(filters)
    except values.BadPair as exc:
        raise click.BadParameter(str(exc), param_hint="--filter") from None
    if search:
        params.append(("q", search))
    if ordering:
        params.append(("ordering", ordering))
    found, count = client.items(path, params, limit=None if everything else limit)
    emit(found, fmt, columns=output.parse_columns(columns))
    if fmt == "table" and count is not None and count > len(found):
        note(f"{len(found)} of {count} {name} shown; --all or --limit N for more")


@click.command()
@click.argument("resource")
@click.argument("object_id", metavar="ID")
@click.option("--columns", help="Only these fields, comma-separated.")
@OUTPUT_OPTION
@pass_session
def show(session: Session, resource: str, object_id: str, columns: str | None, fmt: str) -> None:
    """One object of RESOURCE by its ID."""
    client = session.client()
    _, path = collection(client, resource)
    if not object_id.isdigit():
        raise click.BadParameter(f"{object_id!r} is no id (a number)", param_hint="ID")
    emit(client.get(f"{path}{object_id}/"), fmt, columns=output.parse_columns(columns))
