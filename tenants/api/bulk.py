"""Bulk writes on a list URL, NetBox style: many objects in one request, all or nothing.

- ``POST`` a JSON list: creates each item (201, the list of created objects).
- ``PUT`` / ``PATCH`` a list of objects, each with its ``id``: updates each (200, the list).
- ``DELETE`` a list of ``{"id": N}``: deletes each (204).

Every item takes the path of a single write: the serializer, the role checks (the view's
permissions on each object, the target tenant of what it becomes), the view's
``save_instance`` / ``delete_instance`` (so ``save_object`` / ``delete_object``: the model's
``clean()``, the audit event). They run in one transaction, in the order given, each in a
savepoint so that every item is checked; if any is refused, nothing is written and the answer
names every refused item. Item ``i`` sees the items before it (a serial repeated later in the
body is ``unique``).

- Errors are indexed by item: ``field`` is ``[i]`` (the item as a whole) or ``[i].<field>``,
  the field path a single write would name, e.g. ``[2].serial``. The status and ``code`` are
  the first refused item's; ``errors`` lists the reasons of every refused item.
- Other tenants' ids, like missing ones, are a 404 for the whole request, naming each
  ``[i].id``; an id given twice is a 400 (``duplicate``); an empty list a 400 (``empty``); more
  than the view's ``bulk_max_items`` (1000 by default) a 413 (``too_many_items``).
- ``If-Match`` does not apply to a bulk request (400 naming it). An item may carry ``etag``
  instead: that object's ``ETag``, checked like ``If-Match`` (again under the row's lock);
  stale, it is a 412 naming ``[i].etag``.
- ``Idempotency-Key``: as for a single create on these endpoints, which do not read it.
- A deadlock with a concurrent writer (PostgreSQL picks one of them) is a 409
  ``write_conflict``: nothing was written, try again.

Wiring: a viewset mixes in ``BulkWriteMixin`` (before ``AuditedModelViewSet``) and is
registered on a ``BulkRouter``, which maps ``PUT``/``PATCH``/``DELETE`` on the list URL.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.core.exceptions import PermissionDenied
from django.db import OperationalError, models, transaction
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.metadata import SimpleMetadata
from rest_framework.request import clone_request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from tenants.api.schema import PRECONDITION_FAILED, ObjectAutoSchema
from tenants.django_errors import REFUSALS, as_domain_error
from tenants.errors import (
    Conflict,
    Denied,
    DomainError,
    FieldError,
    Invalid,
    NotFound,
    PreconditionFailed,
)
from tenants.filters import is_detail, known_params, query_params, refuse_unknown

BULK_ACTIONS = {"put": "bulk_update", "patch": "bulk_partial_update", "delete": "bulk_destroy"}
INT64_MAX = 2**63 - 1
#: PostgreSQL's "deadlock detected" and "serialization failure": another writer won; retry.
_RETRYABLE = {"40P01", "40001"}


class TooManyItems(DomainError):
    """413: more items than one bulk request may carry."""

    status: ClassVar[int] = 413
    default_code: ClassVar[str] = "too_many_items"
    default_message: ClassVar[str] = "Too many items in one request."


_BY_STATUS: dict[int, type[DomainError]] = {
    cls.status: cls for cls in (Invalid, Denied, NotFound, Conflict, PreconditionFailed)
}
_CAUGHT = (*REFUSALS, exceptions.APIException)


class BulkRouter(SimpleRouter):
    """``SimpleRouter`` whose list route also maps ``PUT``, ``PATCH`` and ``DELETE`` to the bulk
    actions, for viewsets that have them (others are routed as before)."""

    routes = [
        route._replace(mapping={**route.mapping, **BULK_ACTIONS})
        if getattr(route, "name", None) == "{basename}-list"
        else route
        for route in SimpleRouter.routes
    ]


class BulkMetadata(SimpleMetadata):
    """``OPTIONS``: on a list URL, ``PUT`` is a bulk update, with no one object to describe
    (DRF's would look one up without an id): only ``POST`` is described there, as before."""

    def determine_actions(self, request, view):
        if is_detail(view):
            return super().determine_actions(request, view)
        actions = {}
        if "POST" in view.allowed_methods:
            view.request = clone_request(request, "POST")
            try:
                view.check_permissions(view.request)
            except (exceptions.APIException, PermissionDenied, Http404):
                pass
            else:
                actions["POST"] = self.get_serializer_info(view.get_serializer())
            finally:
                view.request = request
        return actions


class BulkItemSerializer(serializers.Serializer):
    """What identifies an item of a bulk update or delete."""

    id = serializers.IntegerField(min_value=1, max_value=INT64_MAX)
    etag = serializers.CharField(
        required=False,
        max_length=200,
        help_text="Change only this version: the object's current ETag (as If-Match does).",
    )


# --- indexed errors ----------------------------------------------------------------------------


def _under(prefix: str, field: str | None) -> str:
    return f"{prefix}.{field}" if field else prefix


def _detail_reasons(detail: Any, path: str) -> list[FieldError]:
    """DRF's nested error detail as reasons, each named by its dotted path under ``path``."""
    if isinstance(detail, dict):
        out: list[FieldError] = []
        for key, value in detail.items():
            name = None if key in ("non_field_errors", "detail") else str(key)
            out += _detail_reasons(value, _under(path, name))
        return out
    if isinstance(detail, list):
        out = []
        for index, value in enumerate(detail):
            nested = isinstance(value, dict | list)
            out += _detail_reasons(value, f"{path}.{index}" if nested else path)
        return out
    return [FieldError(path, getattr(detail, "code", None) or "invalid", str(detail))]


def _refusal(exc: Exception, index: int) -> tuple[int, str, list[FieldError]]:
    """One item's refusal: its status, its code and its reasons, named under ``[index]``."""
    prefix = f"[{index}]"
    if isinstance(exc, exceptions.ValidationError):
        return 400, "invalid", _detail_reasons(exc.detail, prefix)
    if isinstance(exc, exceptions.APIException):
        code = getattr(exc.detail, "code", None) or exc.default_code
        return exc.status_code, str(code), _detail_reasons(exc.detail, prefix)
    error = as_domain_error(exc)
    assert error is not None  # only REFUSALS are caught
    stale = isinstance(error, PreconditionFailed)
    reasons = [
        FieldError(
            _under(prefix, "etag" if stale and e.field == "If-Match" else e.field),
            e.code,
            e.message,
        )
        for e in error.errors
    ]
    return error.status, error.code, reasons


def _refused(failures: dict[int, Exception], total: int) -> DomainError:
    """One answer for every refused item: the first one's status and code, all the reasons."""
    refusals = {index: _refusal(exc, index) for index, exc in sorted(failures.items())}
    first = next(iter(refusals))
    status_code, code, reasons = refusals[first]
    more = len(refusals) - 1
    message = (
        f"item [{first}] was refused ({reasons[0].message})"
        + (f", and {more} more of the {total} items" if more else "")
        + "; nothing was written"
    )
    cls = _BY_STATUS.get(status_code, Invalid)
    return cls(message, code=code, errors=[r for _, _, rs in refusals.values() for r in rs])


# --- OpenAPI -----------------------------------------------------------------------------------

_ITEM_KEY = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "integer", "minimum": 1, "maximum": INT64_MAX},
        "etag": {
            "type": "string",
            "maxLength": 200,
            "description": "Change only this version: the object's current ETag (412 if not).",
        },
    },
}
_BULK_NOTE = (
    " Bulk: one transaction, all or nothing; an error names its item as `[i]` or "
    "`[i].<field>`. `If-Match` does not apply (400); an item's `etag` does."
)


def _many(schema: dict[str, Any], maximum: int) -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "maxItems": maximum, "items": schema}


class BulkAutoSchema(ObjectAutoSchema):
    """The bulk operations: ``POST`` takes an object or a list of them (and answers in kind);
    ``PUT``/``PATCH``/``DELETE`` on the list URL take and answer lists."""

    def _bulk_action(self) -> str | None:
        action = getattr(self.view, "action", None)
        return action if action in BULK_ACTIONS.values() else None

    def get_operation_id(self) -> str:
        action = self._bulk_action()
        if action is None:
            return super().get_operation_id()
        return "_".join([*(t.replace("-", "_") for t in self._tokenize_path()), action])

    def get_description(self) -> str:
        description = super().get_description() or ""
        if self._bulk_action() is not None or getattr(self.view, "action", None) == "create":
            return (description + _BULK_NOTE).strip()
        return description

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return operation
        action, maximum = getattr(self.view, "action", None), self.view.bulk_max_items
        body = operation.get("requestBody", {}).get("content", {})
        responses = operation.setdefault("responses", {})
        if action == "create":
            for media in body.values():
                media["schema"] = {"oneOf": [media["schema"], _many(media["schema"], maximum)]}
            for media in responses.get("201", {}).get("content", {}).values():
                media["schema"] = {"oneOf": [media["schema"], _many(media["schema"], maximum)]}
        elif action in ("bulk_update", "bulk_partial_update"):
            for media in body.values():
                media["schema"] = _many({"allOf": [media["schema"], _ITEM_KEY]}, maximum)
            for media in responses.get("200", {}).get("content", {}).values():
                media["schema"] = {"type": "array", "items": media["schema"]}
            responses.setdefault("412", PRECONDITION_FAILED)
        elif action == "bulk_destroy":
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _many(_ITEM_KEY, maximum)}},
            }
            responses.setdefault("412", PRECONDITION_FAILED)
        return operation


# --- the mixin ---------------------------------------------------------------------------------


# Bulk create, update and delete on the list URL of an ``AuditedModelViewSet`` (the module's
# docstring says how they answer). No docstring: the OpenAPI descriptions of a viewset without
# its own come from the next class that has one, as before this mixin.
class BulkWriteMixin:
    bulk_max_items = 1000
    schema = BulkAutoSchema()
    metadata_class = BulkMetadata

    # Provided by the viewset (AuditedModelViewSet) this is mixed into.
    request: Any
    action: str | None
    get_queryset: Any
    get_serializer: Any
    get_serializer_class: Any
    get_serializer_context: Any
    check_object_permissions: Any
    check_if_match: Any
    if_match_under_lock: Any
    perform_create: Any
    perform_update: Any
    perform_destroy: Any

    def create(self, request, *args, **kwargs):
        if isinstance(request.data, list):
            return self.bulk_create(request)
        return super().create(request, *args, **kwargs)  # type: ignore[misc]

    def bulk_create(self, request) -> Response:
        items = self._bulk_items(request)
        checker = self.get_serializer()

        def create(index: int, item: dict[str, Any]) -> models.Model:
            serializer = self._validated(checker, item)
            self.perform_create(serializer)
            return serializer.instance

        created = self._all_or_nothing(items, create)
        return Response(self._representations(created), status=status.HTTP_201_CREATED)

    @query_params()
    def bulk_update(self, request, *args, partial: bool = False, **kwargs) -> Response:
        """Replace many objects, each named by its `id` (and, optionally, its `etag`)."""
        items = self._bulk_items(request)
        targets = self._bulk_targets(items)
        checker = self.get_serializer()

        def update(index: int, item: dict[str, Any]) -> models.Model:
            instance, etag = targets[index]
            self.check_object_permissions(request, instance)
            self.check_if_match(instance, etag)
            fields = {k: v for k, v in item.items() if k not in ("id", "etag")}
            serializer = self._validated(checker, fields, instance, partial=partial)
            with self.if_match_under_lock(instance, etag):
                self.perform_update(serializer)
            return serializer.instance

        updated = self._all_or_nothing(items, update)
        return Response(self._representations(updated))

    @query_params()
    def bulk_partial_update(self, request, *args, **kwargs) -> Response:
        """Change fields of many objects, each named by its `id` (and, optionally, its `etag`)."""
        return self.bulk_update(request, *args, partial=True, **kwargs)

    @query_params()
    def bulk_destroy(self, request, *args, **kwargs) -> Response:
        """Delete many objects, each named by its `id` (and, optionally, its `etag`)."""
        items = self._bulk_items(request)
        targets = self._bulk_targets(items)

        def destroy(index: int, item: dict[str, Any]) -> None:
            instance, etag = targets[index]
            self.check_object_permissions(request, instance)
            self.check_if_match(instance, etag)
            with self.if_match_under_lock(instance, etag):
                self.perform_destroy(instance)

        self._all_or_nothing(items, destroy)
        return Response(status=status.HTTP_204_NO_CONTENT)

    # --- the steps ------------------------------------------------------------------------------

    def _bulk_items(self, request) -> list[dict[str, Any]]:
        """The body as a list of objects, or a 400/413 before anything is looked up."""
        if self.action in BULK_ACTIONS.values():
            refuse_unknown(request, known_params(self))
        if "If-Match" in request.headers:
            raise Invalid(
                "If-Match does not apply to a bulk request; give each item its etag",
                code="if_match_not_supported",
                field="If-Match",
            )
        data = request.data
        if not isinstance(data, list):
            raise Invalid("send a JSON list of objects", code="not_a_list")
        if not data:
            raise Invalid("the list is empty: send at least one item", code="empty")
        if len(data) > self.bulk_max_items:
            raise TooManyItems(
                f"{len(data)} items; at most {self.bulk_max_items} are accepted in one request"
            )
        wrong = [
            FieldError(f"[{i}]", "not_an_object", "each item must be a JSON object")
            for i, item in enumerate(data)
            if not isinstance(item, dict)
        ]
        if wrong:
            raise Invalid(errors=wrong, code="not_an_object")
        return data

    def _bulk_targets(self, items: list[dict[str, Any]]) -> list[tuple[models.Model, str | None]]:
        """Each item's object (the caller's to see: others' are 404s) and its ``etag``."""
        reasons: list[FieldError] = []
        keys: list[tuple[int, str | None]] = []
        seen: dict[int, int] = {}
        for index, item in enumerate(items):
            key = BulkItemSerializer(data=item)
            if not key.is_valid():
                reasons += _detail_reasons(key.errors, f"[{index}]")
                continue
            pk, etag = key.validated_data["id"], key.validated_data.get("etag")
            if pk in seen:
                reasons.append(
                    FieldError(f"[{index}].id", "duplicate", f"id {pk} is also item [{seen[pk]}]")
                )
            seen.setdefault(pk, index)
            keys.append((pk, etag))
        if reasons:
            raise Invalid(errors=reasons, code=reasons[0].code)
        found = self.get_queryset().in_bulk([pk for pk, _ in keys])
        what = self.get_queryset().model._meta.verbose_name
        missing = [
            FieldError(f"[{index}].id", "not_found", f"no {what} with id {pk}")
            for index, (pk, _) in enumerate(keys)
            if pk not in found
        ]
        if missing:
            raise NotFound(errors=missing)
        return [(found[pk], etag) for pk, etag in keys]

    def _validated(
        self,
        checker: serializers.BaseSerializer,
        data: dict[str, Any],
        instance: models.Model | None = None,
        *,
        partial: bool = False,
    ) -> serializers.BaseSerializer:
        """A serializer of ``instance`` holding ``data`` validated as ``is_valid`` would
        (raising its ValidationError). One ``checker`` validates every item: its fields (and
        their choices, e.g. every time zone) are built once a request, not once an item."""
        checker.instance, checker.partial, checker.initial_data = instance, partial, data
        validated = checker.run_validation(data)
        serializer = self.get_serializer(instance, partial=partial)
        serializer.initial_data = data
        serializer._validated_data, serializer._errors = validated, {}
        return serializer

    def _all_or_nothing(self, items: list[dict[str, Any]], write: Any) -> list[Any]:
        """``write(index, item)`` for each item in one transaction; any refusal rolls all of it
        back, after every item has been tried."""
        done: list[Any] = []
        failures: dict[int, Exception] = {}
        try:
            with transaction.atomic():
                for index, item in enumerate(items):
                    try:
                        with transaction.atomic():
                            done.append(write(index, item))
                    except _CAUGHT as exc:
                        failures[index] = exc
                if failures:
                    raise _refused(failures, len(items))
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) not in _RETRYABLE:
                raise
            raise Conflict(
                "a concurrent write to the same objects won; nothing was written, try again",
                code="write_conflict",
            ) from exc
        return done

    def _representations(self, instances: list[models.Model]) -> list[dict[str, Any]]:
        """The objects as ``GET`` shows them, read again together, in the order given."""
        fresh = self.get_queryset().in_bulk([i.pk for i in instances])
        rows = [fresh.get(instance.pk, instance) for instance in instances]
        action, self.action = self.action, "retrieve"
        try:
            serializer_class = self.get_serializer_class()
        finally:
            self.action = action
        return serializer_class(rows, many=True, context=self.get_serializer_context()).data
