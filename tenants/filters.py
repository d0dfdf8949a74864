"""Filters that never lie: every list endpoint's query parameters, generated and checked here.

- ``FilterSet`` generates NetBox-style lookups for the fields a filterset names in
  ``Meta.fields``, by the model field's type:

  ======================  ======================================================================
  strings                 ``name``, ``name__n``, ``name__in``, ``name__ic``, ``name__nic``,
                          ``name__isw``, ``name__iew``, ``name__ie``
  choices                 ``status``, ``status__n``, ``status__in`` (values checked)
  numbers, dates, times   ``index``, ``index__n``, ``index__in``, ``index__gte``, ``index__lte``,
                          ``index__gt``, ``index__lt``
  booleans                ``in_maintenance`` (``true`` or ``false``)
  relations               ``site`` (an id or the related model's ``natural_key_field``, e.g. a
                          site's code), ``site__n``, ``site__in``
  anything nullable       ``...__isnull`` (``true`` or ``false``)
  ======================  ======================================================================

  A parameter given more than once is OR-ed (``?site=FRA1&site=IAD1``); ``__in`` takes a
  comma-separated list; the negative lookups (``__n``, ``__nic``) exclude every value given.
  ``Meta.search_fields`` adds ``q``: case-insensitive contains over those fields, OR-ed.
- ``FilterBackend`` and ``OrderingFilter`` (``REST_FRAMEWORK["DEFAULT_FILTER_BACKENDS"]``)
  refuse what they do not know: an unknown query parameter is a 400 naming it
  (``unknown_filter``), an unknown ``ordering`` field a 400 naming ``ordering``
  (``unknown_ordering``). Pagination parameters and ``RESERVED_QUERY_PARAMS`` are always known.
- An action that reads query parameters of its own declares them with ``@query_params(...)``;
  the list's filterset does not apply to it. One that lists other objects (a workflow's steps)
  declares their ``FilterSet`` there and applies it with ``filter_for_action``.
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import models
from django.db.models import Q, QuerySet
from django.http import QueryDict
from django_filters.filters import BaseCSVFilter
from django_filters.rest_framework import DjangoFilterBackend
from django_filters.utils import translate_validation
from drf_spectacular.utils import extend_schema_field
from rest_framework import filters as drf_filters
from rest_framework.settings import api_settings

from tenants.errors import FieldError, Invalid

#: Query parameters every endpoint accepts besides its filters and its paginator's parameters:
#: the renderer's ``format``, and the response shaping of ``fields`` and ``brief``.
RESERVED_QUERY_PARAMS = frozenset({"format", "fields", "brief"})

INT64 = (-(2**63), 2**63 - 1)

# suffix -> (Django lookup, exclude, what it means)
LOOKUPS: dict[str, tuple[str, bool, str]] = {
    "": ("exact", False, "equals; repeat it for any of several values"),
    "n": ("exact", True, "equals none of the values given"),
    "in": ("exact", False, "any of a comma-separated list"),
    "ic": ("icontains", False, "contains, case-insensitive"),
    "nic": ("icontains", True, "does not contain, case-insensitive"),
    "isw": ("istartswith", False, "starts with, case-insensitive"),
    "iew": ("iendswith", False, "ends with, case-insensitive"),
    "ie": ("iexact", False, "equals, case-insensitive"),
    "gte": ("gte", False, "at least"),
    "lte": ("lte", False, "at most"),
    "gt": ("gt", False, "greater than"),
    "lt": ("lt", False, "less than"),
    "isnull": ("isnull", False, "true: not set; false: set"),
}
SUFFIXES = {
    "string": ("", "n", "in", "ic", "nic", "isw", "iew", "ie"),
    "choice": ("", "n", "in"),
    "ordered": ("", "n", "in", "gte", "lte", "gt", "lt"),
    "exact": ("", "n", "in"),
    "boolean": ("",),
    "relation": ("", "n", "in"),
}


# --- one value -------------------------------------------------------------------------------


class StrictBooleanField(forms.Field):
    """``true``/``false`` (or ``1``/``0``) and nothing else: an unreadable flag is a 400, never
    ignored."""

    default_error_messages = {"invalid": "Use true or false."}

    def to_python(self, value: Any) -> bool | None:
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise ValidationError(self.error_messages["invalid"], code="invalid")


class UtcDateTimeField(django_filters.fields.IsoDateTimeField):
    """ISO 8601 date-time, as UTC. Python accepts offsets up to ±23:59 but PostgreSQL only
    ±15:59, so normalising first keeps any valid instant a valid query; an instant outside
    years 1–9999 once in UTC is invalid, not a 500."""

    def to_python(self, value: Any) -> dt.datetime | None:
        parsed = super().to_python(value)
        if parsed is None or parsed.tzinfo is None:
            return parsed
        try:
            return parsed.astimezone(dt.UTC)
        except OverflowError:
            raise ValidationError("Date-time out of range.", code="invalid") from None


def _text() -> forms.Field:
    return forms.CharField()  # refuses NUL characters, which PostgreSQL cannot compare


def _pk_value(model: type[models.Model], value: str) -> Any:
    """``value`` as a primary key of ``model``, or None if it cannot be one."""
    pk = model._meta.pk
    if isinstance(pk, models.UUIDField):
        try:
            return uuid.UUID(value)
        except ValueError:
            return None
    if isinstance(pk, models.IntegerField | models.AutoField):
        if value.isascii() and value.isdigit() and int(value) <= INT64[1]:
            return int(value)
        return None
    return value


def _item(field: models.Field, kind: str) -> tuple[Callable[[], forms.Field], dict[str, Any]]:
    """The form field reading one value for ``field`` and its OpenAPI schema."""
    if kind == "boolean":
        return StrictBooleanField, {"type": "boolean"}
    if kind == "choice":
        values = [str(value) for value, _ in field.flatchoices]
        return (lambda: forms.ChoiceField(choices=field.flatchoices)), {
            "type": "string",
            "enum": values,
        }
    if kind == "string":
        return _text, {"type": "string"}
    if isinstance(field, models.DateTimeField):
        return UtcDateTimeField, {"type": "string", "format": "date-time"}
    if isinstance(field, models.DateField):
        return forms.DateField, {"type": "string", "format": "date"}
    if isinstance(field, models.TimeField):
        return forms.TimeField, {"type": "string", "format": "time"}
    if isinstance(field, models.DecimalField):
        return (lambda: forms.DecimalField(max_digits=30)), {"type": "number"}
    if isinstance(field, models.FloatField):
        return forms.FloatField, {"type": "number"}
    if isinstance(field, models.IntegerField | models.AutoField):
        low, high = INT64
        return (lambda: forms.IntegerField(min_value=low, max_value=high)), {
            "type": "integer",
            "format": "int64",
            "minimum": low,
            "maximum": high,
        }
    if isinstance(field, models.UUIDField):
        return forms.UUIDField, {"type": "string", "format": "uuid"}
    raise ImproperlyConfigured(f"no filter lookups for {field!r}")


def _kind(field: models.Field) -> str:
    if field.is_relation:
        if not (field.many_to_one or field.one_to_one) or field.auto_created:
            raise ImproperlyConfigured(f"only forward relations are filtered: {field!r}")
        return "relation"
    if isinstance(field, models.BooleanField):
        return "boolean"
    if field.choices:
        return "choice"
    if isinstance(field, models.CharField | models.TextField):
        return "string"
    if isinstance(field, models.UUIDField):
        return "exact"
    return "ordered"


# --- several values --------------------------------------------------------------------------


class ValuesInput(forms.TextInput):
    """Every value of a repeated parameter; ``split``: each one also comma-separated."""

    def __init__(self, split: bool = False, many: bool = True) -> None:
        super().__init__()
        self.split, self.many = split, many

    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        values = data.getlist(name) if hasattr(data, "getlist") else [data.get(name)]
        values = [v for v in values if v is not None]
        if self.split:
            values = [part for v in values for part in v.split(",")]
        values = [v for v in values if v.strip()]
        if not self.many:
            return values[-1] if values else None
        return values

    def format_value(self, value: Any) -> str | None:
        if isinstance(value, list | tuple):
            return ",".join(str(v) for v in value)
        return super().format_value(value)


class ValuesField(forms.Field):
    """Cleans each value with ``item()``: one bad value is a 400 naming the parameter."""

    def __init__(
        self, *, item: Callable[[], forms.Field], split: bool = False, many: bool = True, **kw: Any
    ) -> None:
        self.item, self.many = item(), many
        kw.setdefault("widget", ValuesInput(split=split, many=many))
        kw["required"] = False
        super().__init__(**kw)

    def clean(self, value: Any) -> Any:
        if not self.many:
            return None if value in (None, "") else self.item.clean(value)
        return [self.item.clean(v) for v in value or ()]


class LookupFilter(django_filters.Filter):
    """One generated lookup: ``field_name__lookup_expr`` for each value, OR-ed (or excluded).

    ``key``: the related model's natural key field; a value matches on it, or on the primary
    key when it reads as one (``site=FRA1`` or ``site=12``).
    """

    field_class = ValuesField

    def __init__(
        self,
        field_name: str,
        lookup_expr: str,
        *,
        item: Callable[[], forms.Field],
        schema: dict[str, Any],
        exclude: bool = False,
        key: tuple[type[models.Model], str] | None = None,
        many: bool = True,
        split: bool = False,
        label: str = "",
        search: Iterable[str] = (),
    ) -> None:
        # Filter.__init__, not the marker bases' (MultipleChoiceFilter, BaseCSVFilter).
        django_filters.Filter.__init__(
            self,
            field_name=field_name,
            lookup_expr=lookup_expr,
            label=label,
            exclude=exclude,
            item=item,
            many=many,
            split=split,
        )
        self.key, self.search, self.many = key, tuple(search), many
        extend_schema_field({**schema, "description": label})(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> LookupFilter:
        return copy.copy(self)  # stateless but for parent/model, which each FilterSet sets

    def predicate(self, value: Any) -> Q:
        if self.search:
            q = Q()
            for name in self.search:
                q |= Q(**{f"{name}__icontains": value})
            return q
        if self.key is not None:
            model, key = self.key
            q = Q(**{f"{self.field_name}__{key}": value})
            ident = _pk_value(model, value)
            if ident is not None:
                q |= Q(**{self.field_name: ident})
            return q
        return Q(**{f"{self.field_name}__{self.lookup_expr}": value})

    def filter(self, qs: QuerySet, value: Any) -> QuerySet:
        values = value if self.many else [value]
        values = [v for v in values if v is not None]
        if not values:
            return qs
        q = Q()
        for v in values:
            q |= self.predicate(v)
        return qs.exclude(q) if self.exclude else qs.filter(q)


class RepeatedLookupFilter(LookupFilter, django_filters.MultipleChoiceFilter):
    """A lookup that may be repeated (documented as an exploded array)."""


class CommaLookupFilter(LookupFilter, BaseCSVFilter):
    """``__in``: a comma-separated list (documented as an array, not exploded)."""


def lookups(
    name: str, model: type[models.Model], path: str | None = None
) -> dict[str, LookupFilter]:
    """The generated filters of the model field at ``path`` (default ``name``), named ``name``,
    ``name__n``, ... by the field's type."""
    path = path or name
    parts = path.split("__")
    current: type[models.Model] = model
    nullable = False
    field: Any = None
    for index, part in enumerate(parts):
        field = current._meta.get_field(part)
        nullable = nullable or bool(getattr(field, "null", False))
        if index < len(parts) - 1:
            if not field.is_relation:
                raise ImproperlyConfigured(f"{model.__name__}.{path}: {part} is no relation")
            current = field.related_model
    kind = _kind(field)
    key: tuple[type[models.Model], str] | None = None
    if kind == "relation":
        related = field.related_model
        key_name = getattr(related, "natural_key_field", None)
        if key_name:
            key = (related, key_name)
            item, schema = _text, {"type": "string"}
            what = f"{related._meta.verbose_name} id or {key_name}"
        else:
            item, schema = _item(related._meta.pk, _kind(related._meta.pk))
            what = f"{related._meta.verbose_name} id"
    else:
        item, schema = _item(field, kind)
        what = str(field.verbose_name)
    out: dict[str, LookupFilter] = {}
    for suffix in SUFFIXES[kind]:
        lookup, exclude, meaning = LOOKUPS[suffix]
        filter_class = CommaLookupFilter if suffix == "in" else RepeatedLookupFilter
        out[f"{name}__{suffix}" if suffix else name] = filter_class(
            path,
            lookup,
            item=item,
            schema=schema,
            exclude=exclude,
            key=key,
            split=suffix == "in",
            label=f"{what}: {meaning}",
        )
    if nullable:
        out[f"{name}__isnull"] = boolean_filter(path, "isnull", f"{what}: {LOOKUPS['isnull'][2]}")
    return out


def boolean_filter(path: str, lookup: str, label: str) -> LookupFilter:
    """``path__lookup=true|false``, anything else a 400."""
    return LookupFilter(
        path,
        lookup,
        item=StrictBooleanField,
        schema={"type": "boolean"},
        many=False,
        label=label,
    )


def search_filter(fields: Iterable[str]) -> LookupFilter:
    fields = tuple(fields)
    return LookupFilter(
        "",
        "icontains",
        item=_text,
        schema={"type": "string"},
        many=False,
        search=fields,
        label=f"Search: {', '.join(f.replace('__', '.') for f in fields)} contain it "
        "(case-insensitive)",
    )


class FilterSet(django_filters.FilterSet):
    """Generates the lookups of each field in ``Meta.fields`` (a name, or ``(name, path)`` for a
    field reached through relations, e.g. ``("site", "rack__site")``), and ``q`` from
    ``Meta.search_fields``. Filters declared on the class win over generated ones."""

    @classmethod
    def get_filters(cls) -> dict[str, django_filters.Filter]:
        filters: dict[str, django_filters.Filter] = {}
        model = cls._meta.model
        if model is not None:
            for entry in cls._meta.fields or ():
                name, path = (entry, entry) if isinstance(entry, str) else entry
                filters.update(lookups(name, model, path))
            search = getattr(getattr(cls, "Meta", None), "search_fields", ())
            if search:
                filters["q"] = search_filter(search)
        filters.update(cls.declared_filters)
        return filters

    def __init__(
        self,
        data: Any = None,
        queryset: QuerySet | None = None,
        *,
        request: Any = None,
        prefix: str | None = None,
    ) -> None:
        if queryset is None:
            queryset = self._meta.model._default_manager.all()
        self.is_bound = data is not None
        self.data = data if data is not None else QueryDict()
        self.queryset = queryset
        self.request = request
        self.form_prefix = prefix
        # Only the filters asked for, and the plain ones (for the browsable API's form): a
        # filterset has a hundred lookups, and copying and validating them all per request
        # would be most of a small list's time.
        given = set(self.data.keys()) if self.is_bound else set()
        self.filters = {
            name: copy.deepcopy(filter_)
            for name, filter_ in self.base_filters.items()
            if name in given or "__" not in name
        }
        for filter_ in self.filters.values():
            filter_.model = queryset.model
            filter_.parent = self


# --- the backends ----------------------------------------------------------------------------


def query_params(*declared: str | type, paginated: bool = False) -> Callable[[Any], Any]:
    """Declare the query parameters an action reads itself: names, serializer classes whose
    fields they are, or a ``FilterSet`` of what it lists (its filters, documented in the
    schema; the action applies it with ``filter_for_action``); ``paginated``: it pages its
    answer (the paginator's parameters too). Such an action accepts these and the reserved
    ones, and the view's own filterset and ordering do not apply to it."""
    names: set[str] = set()
    filterset: type[django_filters.FilterSet] | None = None
    for item in declared:
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, type) and issubclass(item, django_filters.FilterSet):
            filterset = item
            names |= set(item.base_filters)
        else:
            names |= set(item().fields)

    def decorate(func: Any) -> Any:
        func.query_params = frozenset(names)
        func.query_params_paginated = paginated
        func.query_filterset = filterset
        return func

    return decorate


def filter_for_action(view: Any, queryset: QuerySet) -> QuerySet:
    """``queryset`` filtered by the ``FilterSet`` the view's action declared with
    ``@query_params``: a bad value is a 400 naming the parameter, as on any list."""
    filterset_class = getattr(_handler(view), "query_filterset", None)
    if filterset_class is None:
        raise ImproperlyConfigured(f"{view.action}: no FilterSet declared with @query_params")
    filterset = filterset_class(view.request.query_params, queryset=queryset, request=view.request)
    if not filterset.is_valid():
        raise translate_validation(filterset.errors)
    return filterset.qs


def _handler(view: Any) -> Any:
    return getattr(view, getattr(view, "action", None) or "", None)


def action_query_params(view: Any) -> frozenset[str] | None:
    """What the view's action declared with ``@query_params``; None if it declared nothing."""
    return getattr(_handler(view), "query_params", None)


def is_detail(view: Any) -> bool:
    kwarg = getattr(view, "lookup_url_kwarg", None) or getattr(view, "lookup_field", None)
    return bool(kwarg) and kwarg in (getattr(view, "kwargs", None) or {})


def _paginator_params(view: Any) -> set[str]:
    paginator = getattr(view, "paginator", None)
    names = (
        getattr(paginator, attr, None)
        for attr in (
            "limit_query_param",
            "offset_query_param",
            "page_query_param",
            "page_size_query_param",
            "cursor_query_param",
        )
    )
    return {name for name in names if name}


def known_params(view: Any, filterset_class: Any = None) -> set[str]:
    """Every query parameter the view's current action reads:

    - an action that declared its own (``@query_params``): those, and the paginator's if it
      pages;
    - a list: its filterset's filters, the paginator's parameters and ``ordering``;
    - one object (retrieve, update, a detail action): its filterset's filters (DRF applies them
      to the lookup), nothing else;

    and ``RESERVED_QUERY_PARAMS`` and DRF's ``format`` everywhere.
    """
    known = set(RESERVED_QUERY_PARAMS)
    if api_settings.URL_FORMAT_OVERRIDE:
        known.add(api_settings.URL_FORMAT_OVERRIDE)
    own = action_query_params(view)
    if own is not None:
        known |= own
        if getattr(_handler(view), "query_params_paginated", False):
            known |= _paginator_params(view)
        return known
    if filterset_class is not None:
        known |= set(filterset_class.base_filters)
    if not is_detail(view):
        known |= _paginator_params(view)
        for backend in getattr(view, "filter_backends", ()):
            if issubclass(backend, drf_filters.OrderingFilter):
                known.add(backend.ordering_param)
    return known


def refuse_unknown(request: Any, known: Iterable[str]) -> None:
    allowed = set(known)
    unknown = [name for name in request.query_params if name not in allowed]
    if unknown:
        raise Invalid(
            code="unknown_filter",
            errors=[
                FieldError(
                    name,
                    "unknown_filter",
                    f"'{name}' is not a filter or parameter of this endpoint",
                )
                for name in unknown
            ],
        )


class FilterBackend(DjangoFilterBackend):
    """django-filter, strict: a query parameter the action does not read (``known_params``) is
    a 400 ``unknown_filter`` naming it; a bad value is a 400 naming the filter."""

    filterset_base = FilterSet

    def get_filterset_class(self, view: Any, queryset: QuerySet | None = None) -> Any:
        if action_query_params(view) is not None:
            # The action reads its own parameters (and documents them), or filters what it
            # lists with the FilterSet it declared: that one is in the schema.
            return getattr(_handler(view), "query_filterset", None)
        return super().get_filterset_class(view, queryset)

    def filter_queryset(self, request: Any, queryset: QuerySet, view: Any) -> QuerySet:
        if action_query_params(view) is not None:
            refuse_unknown(request, known_params(view))
            return queryset
        filterset_class = self.get_filterset_class(view, queryset)
        refuse_unknown(request, known_params(view, filterset_class))
        return super().filter_queryset(request, queryset, view)


class OrderingFilter(drf_filters.OrderingFilter):
    """``?ordering=`` over the view's ``ordering_fields`` (comma-separated, ``-`` reverses); any
    other field is a 400 ``unknown_ordering`` naming it. Lists only."""

    def filter_queryset(self, request: Any, queryset: QuerySet, view: Any) -> QuerySet:
        if action_query_params(view) is not None or is_detail(view):
            return queryset
        return super().filter_queryset(request, queryset, view)

    def valid_names(self, queryset: Any, view: Any, request: Any = None) -> list[str]:
        try:
            fields = self.get_valid_fields(queryset, view, {"request": request})
        except (AssertionError, AttributeError, ImproperlyConfigured):  # nothing to order by
            return []
        return [name for name, _ in fields]

    def remove_invalid_fields(
        self, queryset: QuerySet, fields: Iterable[str], view: Any, request: Any
    ) -> list[str]:
        fields = list(fields)
        valid = set(self.valid_names(queryset, view, request))
        unknown = [term for term in fields if term.removeprefix("-") not in valid]
        if unknown:
            choices = ", ".join(sorted(valid)) or "none"
            raise Invalid(
                code="unknown_ordering",
                errors=[
                    FieldError(
                        self.ordering_param,
                        "unknown_ordering",
                        f"cannot order by '{term}'; use one of: {choices} (prefix '-' to reverse)",
                    )
                    for term in unknown
                ],
            )
        return fields

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        if action_query_params(view) is not None:
            return []
        names = sorted(self.valid_names(None, view))
        if not names:
            return []
        return [
            {
                "name": self.ordering_param,
                "required": False,
                "in": "query",
                "description": "Order by these fields, comma-separated; '-' reverses one.",
                "schema": {
                    "type": "array",
                    "items": {"type": "string", "enum": [*names, *(f"-{n}" for n in names)]},
                },
                "style": "form",
                "explode": False,
            }
        ]


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """ISO 8601 date-time, compared in UTC (see ``UtcDateTimeField``)."""

    field_class = UtcDateTimeField
