"""How answers are shown: table, JSON or YAML. Pure: strings in, strings out (no I/O).

A table's columns are chosen from the data, so a resource the CLI has never heard of still
gets a sensible one: its identifier first, then what names it, then what says how it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

FORMATS = ("table", "json", "yaml")

#: Keys a table shows first when the data has them, in this order: what identifies a row, what
#: names it, what kind it is, how it is, where it is, when it was.
PREFERRED = (
    "id",
    "code",
    "slug",
    "serial",
    "name",
    "username",
    "version",
    "kind",
    "action",
    "rule",
    "subject",
    "state",
    "status",
    "lifecycle_state",
    "health",
    "allowed",
    "site_code",
    "site",
    "rack",
    "model",
    "tenant",
    "ultraserver",
    "occurred_at",
    "created_at",
)
#: What a related object's name is called beside its id (``site`` → ``site_code``).
NAMING = ("code", "name", "serial", "slug")
MAX_COLUMNS = 8
MIN_COLUMNS = 4
CELL_WIDTH = 60


def is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def default_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The columns for ``rows``: the preferred keys they have (``site_code`` or ``rack_name``
    in place of the bare id where the data names it), topped up with their other plain fields
    to at least ``MIN_COLUMNS``, at most ``MAX_COLUMNS`` in all."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    if not keys:
        return []
    present = set(keys)
    chosen: list[str] = []
    for key in PREFERRED:
        if key not in present:
            continue
        named = [f"{key}_{part}" for part in NAMING if f"{key}_{part}" in present]
        column = named[0] if named else key
        if column not in chosen:
            chosen.append(column)
    chosen = chosen[:MAX_COLUMNS]
    if len(chosen) < MIN_COLUMNS:
        plain = [k for k in keys if k not in chosen and all(is_scalar(r.get(k)) for r in rows)]
        chosen += plain[: MIN_COLUMNS - len(chosen)]
    return chosen or keys[:MAX_COLUMNS]


def cell(value: object, width: int = CELL_WIDTH) -> str:
    """One value as a table shows it: plain scalars as they are, anything nested as compact
    JSON, long text cut with an ellipsis."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, int | float):
        text = str(value)
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    text = " ".join(text.split())  # one line per row
    return text if len(text) <= width else text[: width - 1] + "…"


def table_cells(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str], width: int = CELL_WIDTH
) -> list[list[str]]:
    return [[cell(row.get(c), width) for c in columns] for row in rows]


def detail_cells(item: Mapping[str, Any]) -> list[list[str]]:
    """One object as ``field | value`` rows (nested values as compact JSON)."""
    return [[key, cell(value, width=200)] for key, value in item.items()]


def as_json(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def as_yaml(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def parse_columns(spec: str | None) -> list[str] | None:
    """``--columns id,name,state`` as a list; None (the default columns) when not given."""
    if not spec:
        return None
    return [c.strip() for c in spec.split(",") if c.strip()]


def format_error(
    status: int | None, code: str, message: str, errors: Sequence[Mapping[str, Any]]
) -> list[str]:
    """The API's error body as lines a person reads: the status, code and message, then each
    error naming its field (``spec.batch_size: must be at least 1 [min_value]``)."""
    head = f"{status} {code}: {message}" if status else f"{code}: {message}"
    lines = [head]
    for error in errors:
        text = str(error.get("message") or "")
        if text == message and len(errors) == 1 and not error.get("field"):
            continue  # the same sentence twice says nothing new
        field = error.get("field")
        where = f"{field}: " if field else ""
        kind = error.get("code")
        lines.append(f"  {where}{text}" + (f" [{kind}]" if kind and kind != code else ""))
    return lines
