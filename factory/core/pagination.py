"""Pagination of every list: ``?limit=&offset=`` (the default), or keyset pages with
``?cursor=``.

- **limit/offset**: ``{count, next, previous, results}``; 50 a page by default, at most 1000.
- **cursor** (keyset): ``?cursor=`` (empty) starts a walk, each answer's ``next`` (and
  ``previous``) link carries the opaque cursor of the next (previous) page, ``limit`` sets the
  page size as above. The answer is ``{next, previous, results}``: no ``count``, so a page costs
  one query however long the list. The cursor names the last row seen by its sort key, so rows
  inserted or deleted between pages shift nothing: no row is skipped or shown twice.

  The sort key is the list's ordering (``?ordering=``, else the view's or the model's), a
  relation by its model's own ordering as ``order_by`` does, with the primary key appended, so
  every key is unique. Nulls sort last ascending, first descending (PostgreSQL's default).
  The cursor is signed: a cursor that was not issued by this list under this ordering is a 400
  naming ``cursor``, as is ``cursor`` together with ``offset``.

A view that sets ``cursor_by_default = True`` (the event log, which grows without end: a
``COUNT(*)`` per page would grow with it) pages by cursor when neither ``cursor`` nor
``offset`` is given; ``?offset=`` still asks for limit/offset pages with their ``count``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from dataclasses import dataclass
from typing import Any

from django.core import signing
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import F, Q, QuerySet
from django.db.models.expressions import OrderBy
from django.template import loader
from rest_framework.pagination import LimitOffsetPagination as _LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from tenants.errors import FieldError, Invalid

_SALT = "factory.core.pagination.cursor"
_ALIAS = "_cursor_key_{}"
_MAX_RELATION_DEPTH = 3  # a relation ordered by a relation ordered by ... (as Django, no loops)


@dataclass(frozen=True)
class SortKey:
    """One term of a keyset: an ORM path and its direction."""

    path: str
    descending: bool

    def __str__(self) -> str:
        return f"-{self.path}" if self.descending else self.path


def _invalid_cursor(message: str, code: str = "invalid_cursor") -> Invalid:
    return Invalid(message, code=code, field="cursor")


def _term(order: Any) -> tuple[str, bool] | None:
    """``(path, descending)`` of one ``order_by`` term; None if it is no plain field path."""
    if isinstance(order, str):
        if order == "?" or "." in order:
            return None
        return order.removeprefix("-"), order.startswith("-")
    if isinstance(order, OrderBy) and isinstance(order.expression, F):
        return order.expression.name, order.descending
    if isinstance(order, F):
        return order.name, False
    return None


def _pageable_term(order: object) -> tuple[str, bool]:
    """An ordering term a cursor can page by (a field path and its direction), or the refusal."""
    term = _term(order)
    if term is None:
        raise _invalid_cursor(
            "this list's ordering cannot be paged by cursor; use limit and offset",
            code="cursor_unsupported",
        )
    return term


def _expand(
    model: type[models.Model], path: str, descending: bool, depth: int = 0
) -> list[SortKey]:
    """``path`` as the field paths ``order_by`` sorts it by: a relation by its model's
    ``Meta.ordering`` (or its key), ``pk`` by the primary key's name."""
    parts = path.split("__")
    current, field = model, None
    for index, part in enumerate(parts):
        if part == "pk":
            part = parts[index] = current._meta.pk.name
        try:
            field = current._meta.get_field(part)
        except FieldDoesNotExist:
            return [SortKey(path, descending)]  # an annotation: sorted as it is
        if index < len(parts) - 1:
            if not field.is_relation or field.related_model is None:
                return [SortKey(path, descending)]  # a transform (``__year``): as it is
            current = field.related_model
    path = "__".join(parts)
    named = field is not None and parts[-1] == field.name  # not the attname (``site_id``)
    if (
        field is not None
        and field.is_relation
        and (field.many_to_one or field.one_to_one)
        and named
        and depth < _MAX_RELATION_DEPTH
    ):
        related = field.related_model
        ordering = list(related._meta.ordering or ())
        if not ordering:
            return [SortKey(path, descending)]  # by the key it holds, as ``order_by`` does
        keys: list[SortKey] = []
        for order in ordering:
            name, desc = _pageable_term(order)
            keys += _expand(model, f"{path}__{name}", descending != desc, depth + 1)
        return keys
    return [SortKey(path, descending)]


def sort_keys(queryset: QuerySet) -> list[SortKey]:
    """The unique sort key of ``queryset``: its ordering, made total by the primary key."""
    query = queryset.query
    model = queryset.model
    ordering = list(query.order_by) or (
        list(model._meta.ordering or ()) if query.default_ordering else []
    )
    keys: list[SortKey] = []
    for order in ordering:
        keys += _expand(model, *_pageable_term(order))
    pk = model._meta.pk.name
    unique: list[SortKey] = []
    for key in keys:
        if key.path not in {k.path for k in unique}:
            unique.append(key)
        if key.path == pk:
            return unique  # the rest cannot break a tie
    return [*unique, SortKey(pk, False)]


def _plain(value: Any) -> Any:
    """A key value as JSON; the field's lookups read it back (exactly: microseconds kept)."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    return value


def _beyond(alias: str, descending: bool, value: Any) -> Q | None:
    """Rows past ``value`` on one key (nulls last ascending, first descending); None: none."""
    if descending:
        return Q(**{f"{alias}__isnull": False}) if value is None else Q(**{f"{alias}__lt": value})
    if value is None:
        return None
    return Q(**{f"{alias}__gt": value}) | Q(**{f"{alias}__isnull": True})


def _after(keys: list[SortKey], values: list[Any]) -> Q | None:
    """Rows after the position ``values`` in the order of ``keys``: past it on the first key,
    or equal on it and past it on the next, and so on."""
    condition: Q | None = None
    equal = Q()
    for index, (key, value) in enumerate(zip(keys, values, strict=True)):
        alias = _ALIAS.format(index)
        beyond = _beyond(alias, key.descending, value)
        if beyond is not None:
            term = equal & beyond
            condition = term if condition is None else condition | term
        equal &= Q(**{f"{alias}__isnull": True}) if value is None else Q(**{alias: value})
    return condition


def _order(keys: list[SortKey]) -> list[OrderBy]:
    return [
        F(_ALIAS.format(i)).desc(nulls_first=True)
        if key.descending
        else F(_ALIAS.format(i)).asc(nulls_last=True)
        for i, key in enumerate(keys)
    ]


class LimitOffsetPagination(_LimitOffsetPagination):
    """``?limit=&offset=``; 50 by default, at most 1000 a page. ``?cursor=``: keyset pages
    (the module's docstring)."""

    default_limit = 50
    max_limit = 1000
    cursor_query_param = "cursor"  # also known to the strict filter backend
    cursor_query_description = (
        "Keyset pages: empty to start, then the cursor of a `next` or `previous` link. "
        "Stable while rows are added or removed; no `count`. Not together with `offset`."
    )
    cursor_template = "rest_framework/pagination/previous_and_next.html"
    cursor_mode = False

    def paginate_queryset(self, queryset, request, view=None):
        token = request.query_params.get(self.cursor_query_param)
        if (
            token is None
            and getattr(view, "cursor_by_default", False)
            and self.offset_query_param not in request.query_params
        ):
            token = ""  # this list's first cursor page
        if token is None:
            return super().paginate_queryset(queryset, request, view)
        if self.offset_query_param in request.query_params:
            raise Invalid(
                errors=[
                    FieldError(
                        name,
                        "ambiguous",
                        "page either by cursor or by offset, not both",
                    )
                    for name in (self.cursor_query_param, self.offset_query_param)
                ],
                code="ambiguous",
            )
        if not isinstance(queryset, QuerySet):
            raise _invalid_cursor(
                "this list cannot be paged by cursor; use limit and offset",
                code="cursor_unsupported",
            )
        return self._keyset_page(queryset, request, token)

    # --- keyset pages ---------------------------------------------------------------------------

    def _decode(self, token: str, model: type[models.Model], keys: list[SortKey]) -> dict:
        try:
            payload = signing.Signer(salt=_SALT).unsign_object(token)
        except (signing.BadSignature, ValueError, UnicodeError):
            raise _invalid_cursor(
                "not a cursor of this list; start again with an empty cursor"
            ) from None
        if (
            not isinstance(payload, dict)
            or payload.get("m") != model._meta.label_lower
            or payload.get("k") != [str(k) for k in keys]
            or not isinstance(payload.get("v"), list)
            or len(payload["v"]) != len(keys)
        ):
            raise _invalid_cursor(
                "the cursor was issued for another list or ordering; keep the ordering of the "
                "walk, or start again with an empty cursor",
                code="cursor_mismatch",
            )
        return payload

    def _encode(self, row: models.Model, reverse: bool) -> str:
        values = [_plain(getattr(row, _ALIAS.format(i))) for i in range(len(self._keys))]
        payload = {
            "m": self._model._meta.label_lower,
            "k": [str(k) for k in self._keys],
            "v": values,
            "r": reverse,
        }
        return signing.Signer(salt=_SALT).sign_object(payload)

    def _keyset_page(self, queryset: QuerySet, request: Any, token: str) -> list:
        self.cursor_mode = True
        self.request = request
        self.limit = self.get_limit(request)
        self._model = queryset.model
        self._keys = keys = sort_keys(queryset)
        reverse = False
        queryset = queryset.annotate(**{_ALIAS.format(i): F(k.path) for i, k in enumerate(keys)})
        if token:
            payload = self._decode(token, queryset.model, keys)
            reverse = bool(payload.get("r"))
            walk = [SortKey(k.path, k.descending != reverse) for k in keys]
            after = _after(walk, payload["v"])
            queryset = queryset.filter(after) if after is not None else queryset.none()
        else:
            walk = keys
        rows = list(queryset.order_by(*_order(walk))[: self.limit + 1])
        more = len(rows) > self.limit
        rows = rows[: self.limit]
        if reverse:
            rows.reverse()
        # Forward: more rows follow; a cursor was given, so rows may precede. Backward: the
        # other way round. An empty page links nowhere (it has no row to stand on).
        has_next, has_previous = (True, more) if reverse else (more, bool(token))
        self._next = self._encode(rows[-1], False) if rows and has_next else None
        self._previous = self._encode(rows[0], True) if rows and has_previous else None
        self.display_page_controls = bool(self._next or self._previous)
        return rows

    def _link(self, token: str | None) -> str | None:
        if token is None:
            return None
        url = remove_query_param(self.request.build_absolute_uri(), self.offset_query_param)
        return replace_query_param(url, self.cursor_query_param, token)

    def get_next_link(self):
        return self._link(self._next) if self.cursor_mode else super().get_next_link()

    def get_previous_link(self):
        return self._link(self._previous) if self.cursor_mode else super().get_previous_link()

    def get_paginated_response(self, data):
        if not self.cursor_mode:
            return super().get_paginated_response(data)
        return Response(
            {"next": self.get_next_link(), "previous": self.get_previous_link(), "results": data}
        )

    def to_html(self):
        if not self.cursor_mode:
            return super().to_html()
        context = {"previous_url": self.get_previous_link(), "next_url": self.get_next_link()}
        return loader.get_template(self.cursor_template).render(context)

    # --- OpenAPI --------------------------------------------------------------------------------

    def get_paginated_response_schema(self, schema):
        answer = super().get_paginated_response_schema(schema)
        answer["required"] = ["results"]
        answer["properties"]["count"]["description"] = (
            "How many rows the list has (limit/offset pages; cursor pages have none)."
        )
        for link in ("next", "previous"):
            answer["properties"][link]["description"] = (
                f"The {link} page, or null. Cursor pages: the same query with the {link} "
                f"page's `{self.cursor_query_param}`."
            )
        return answer

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.offset_query_param:
                parameter["description"] = f"{parameter['description']} Not with `cursor`."
        description = self.cursor_query_description
        if getattr(view, "cursor_by_default", False):
            description += (
                " This list's default: without `cursor` or `offset` the answer is the first "
                "cursor page; give `offset` for limit/offset pages with a `count`."
            )
        parameters.append(
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": description,
                "schema": {"type": "string"},
            }
        )
        return parameters
