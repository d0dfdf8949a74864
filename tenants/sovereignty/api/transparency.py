"""The access-transparency log as people read it: each row with its site's code and how many
identical decisions it stands for, and the whole filtered log as a streamed CSV or JSON file.
Shared by the API and the console, so both show and export the same thing."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from django.db.models import F, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import StreamingHttpResponse
from rest_framework.serializers import Serializer
from rest_framework.utils.encoders import JSONEncoder

from tenants.errors import Invalid
from tenants.sovereignty.filtersets import site_model
from tenants.sovereignty.models.decisions import REPEATS_RESOURCE

EXPORT_FORMATS = ("csv", "json")
#: Rows read from the database per round trip while streaming.
CHUNK = 500


def asks_for_summaries(params: Mapping[str, Any]) -> bool:
    """The chained summary rows of repeats ("x37 from t1 to t2") are evidence, not news: a list
    shows them only when asked for by ``resource_type``."""
    return any(name.startswith("resource_type") for name in params)


def log_rows(queryset: QuerySet, *, summaries: bool = False) -> QuerySet:
    """``queryset`` of decision records annotated with ``site_code``, ``repeat_count`` (1 for a
    decision that never repeated) and ``repeat_until``; without summary rows unless asked."""
    if not summaries:
        queryset = queryset.exclude(resource_type=REPEATS_RESOURCE)
    codes = site_model()._default_manager.filter(pk=OuterRef("site_id")).values("code")[:1]
    return queryset.annotate(
        site_code=Subquery(codes),
        repeat_count=Coalesce(F("repeats__count"), Value(1)),
        repeat_until=F("repeats__last_at"),
    )


def export_format(params: Mapping[str, Any]) -> str:
    """``format``: csv or json (the default); anything else is a 400 naming it."""
    value = params.get("format") or "json"
    if value not in EXPORT_FORMATS:
        raise Invalid(
            f"format must be one of {', '.join(EXPORT_FORMATS)}",
            code="invalid_choice",
            field="format",
        )
    return value


#: A cell starting with one of these is a formula to a spreadsheet (CSV injection, OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """A value as its CSV cell; text a spreadsheet would run as a formula is quoted with a
    leading ``'`` (a person's reason or a principal is written by whoever asked)."""
    if value is None:
        return ""
    if isinstance(value, list):
        text = "; ".join(str(v) for v in value)
    elif isinstance(value, bool):
        return "true" if value else "false"
    elif isinstance(value, int | float):
        return str(value)  # a number, negative or not, is data
    else:
        text = str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _rows(records: QuerySet, serializer: Serializer) -> Iterator[dict[str, Any]]:
    for record in records.iterator(chunk_size=CHUNK):
        yield serializer.to_representation(record)


def csv_lines(rows: Iterable[dict[str, Any]], columns: list[str]) -> Iterator[str]:
    """A header and one line per row; lists joined with "; "."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.getvalue():  # no rows: the header alone
        yield buffer.getvalue()


def json_chunks(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """A JSON array, written one element at a time."""
    yield "["
    for i, row in enumerate(rows):
        yield ("," if i else "") + json.dumps(row, cls=JSONEncoder)
    yield "]"


def export_response(records: QuerySet, serializer: Serializer, fmt: str) -> StreamingHttpResponse:
    """The file of ``records`` (already scoped and filtered) as ``serializer`` shows each one
    (its context decides what is redacted), streamed."""
    rows = _rows(records, serializer)
    if fmt == "csv":
        names: list[str] = list(serializer.fields.keys())
        columns = [name for name in names if name != "url"]
        response = StreamingHttpResponse(
            csv_lines(rows, columns), content_type="text/csv; charset=utf-8"
        )
    else:
        response = StreamingHttpResponse(json_chunks(rows), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="access-log.{fmt}"'
    return response
