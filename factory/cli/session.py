"""What every command shares: which server and token (flags, environment, config file), the
client, and how answers are printed."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from factory.cli import config as configfile
from factory.cli import output
from factory.cli.client import Client, normalize_url

#: Exit codes: 0 done; 1 the API refused (or a watched workflow failed, an evaluated action
#: was denied); 2 a usage error (click's); 3 no answer from the server; 4 gave up waiting.
EXIT_REFUSED = 1
EXIT_UNREACHABLE = 3
EXIT_TIMEOUT = 4

OUTPUT_OPTION = click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(output.FORMATS),
    default="table",
    show_default=True,
    help="How to print the answer.",
)


def console_for(stream: TextIO) -> Console:
    """A terminal gets colour and its own width; a pipe or a file gets plain text, as wide as
    the rows are (a table is never wrapped to an imagined 80 columns)."""
    if stream.isatty():
        return Console(file=stream)
    return Console(file=stream, width=4000, no_color=True, highlight=False, soft_wrap=True)


@dataclass
class Session:
    url_option: str | None = None
    token_option: str | None = None
    timeout: float = 30.0
    config_file: Path = field(default_factory=configfile.config_path)
    _client: Client | None = None

    def config(self) -> configfile.Config:
        return configfile.load(self.config_file)

    def server(self) -> tuple[str, str]:
        """The URL and token to use. The stored token goes only to the server it was issued
        by: with another ``--url`` and no ``--token``, none is sent."""
        stored = self.config()
        if self.url_option:
            url = normalize_url(self.url_option)
        elif stored.url:
            url = normalize_url(stored.url)
        else:
            raise click.UsageError(
                "no server: factoryctl login --url URL, or pass --url (or set FACTORY_URL)"
            )
        if self.token_option:
            return url, self.token_option
        same = bool(stored.url) and normalize_url(stored.url) == url
        return url, stored.token if same else ""

    def client(self) -> Client:
        if self._client is None:
            try:
                url, token = self.server()
            except ValueError as exc:
                raise click.UsageError(str(exc)) from None
            self._client = Client(url, token, timeout=self.timeout)
        return self._client


pass_session = click.make_pass_decorator(Session)


def emit(
    data: Any,
    fmt: str,
    *,
    columns: Sequence[str] | None = None,
    title: str | None = None,
    stream: TextIO | None = None,
    width: int = output.CELL_WIDTH,
) -> None:
    """Print ``data`` (a list of objects, or one) as a table, JSON or YAML."""
    out = stream or sys.stdout
    if fmt == "json":
        out.write(output.as_json(data) + "\n")
        return
    if fmt == "yaml":
        out.write(output.as_yaml(data))
        return
    console = console_for(out)
    # a rule under the header in a terminal; plain columns for grep and awk elsewhere
    frame = box.SIMPLE_HEAD if console.is_terminal else None
    if isinstance(data, list):
        rows = [r for r in data if isinstance(r, Mapping)]
        cols = list(columns) if columns else output.default_columns(rows)
        table = Table(box=frame, show_edge=False, title=title, title_justify="left")
        for col in cols:
            table.add_column(Text(col))
        for cells in output.table_cells(rows, cols, width):
            table.add_row(*(Text(c) for c in cells))  # data, never markup
        if not rows:
            console.print("(none)")
            return
        _print(console, table)
    elif isinstance(data, Mapping):
        table = Table(
            "field",
            "value",
            box=frame,
            show_edge=False,
            show_header=console.is_terminal,
            title=title,
            title_justify="left",
        )
        for key, value in output.detail_cells(data):
            if columns and key not in columns:
                continue
            table.add_row(Text(key), Text(value))
        _print(console, table)
    else:
        console.print(Text(output.cell(data, width=10_000)))


def _print(console: Console, table: Table) -> None:
    """A table; in a pipe without the padding that would trail each line."""
    if console.is_terminal:
        console.print(table)
        return
    with console.capture() as captured:
        console.print(table)
    lines = [line.rstrip() for line in captured.get().splitlines()]
    console.file.write("\n".join(lines) + "\n")


def note(message: str) -> None:
    """A remark for the person, on stderr (stdout stays the answer)."""
    click.echo(message, err=True)
