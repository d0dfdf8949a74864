"""Base API pieces shared by every app: tenant-scoped, role-checked, audited viewsets, and the
object responses automation relies on.

- Every object response (detail ``GET``, create, update) carries an ``ETag``
  (``tenants.api.conditional``); ``If-None-Match`` on a detail ``GET`` is a 304, ``If-Match``
  on ``PUT``/``PATCH``/``DELETE`` (and on an action that changes the object, e.g. a workflow's
  ``pause/``) a 412 unless it names the current version (checked again under the row lock the
  write takes). Without ``If-Match`` a write has no precondition.
- Every 201 of a ``create`` carries the created object's absolute URL in ``Location``.
- ``GET`` lists and details take ``?brief`` (``id``, ``url``, ``display`` and the serializer's
  ``Meta.brief_fields``) or ``?fields=a,b`` (only those; an unknown one is a 400 naming it);
  a list then fetches no prefetched relation that the chosen fields do not show.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import structlog
from django.db import models
from django.http import HttpResponseNotModified
from django.urls import NoReverseMatch
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.reverse import reverse

from tenants.access import Actor, actor_for, scope_queryset
from tenants.api import conditional
from tenants.api.schema import ObjectAutoSchema
from tenants.choices import AuditSource, Role
from tenants.errors import PreconditionFailed
from tenants.services.changes import (
    ChangeContext,
    Precondition,
    delete_object,
    precondition,
    save_object,
)

logger = structlog.get_logger(__name__)

SHAPED_ACTIONS = frozenset({"list", "retrieve"})
IDENTITY_FIELDS = ("url", "display")  # offered by ?brief and ?fields, beside the serializer's
_TRUE, _FALSE = frozenset({"", "true", "1", "yes"}), frozenset({"false", "0", "no"})


def change_context(request) -> ChangeContext:
    return ChangeContext(
        actor=actor_for(request.user),
        source=AuditSource.API,
        request_id=getattr(request, "request_id", ""),
    )


def _invalid(param: str, message: str, code: str = "invalid") -> exceptions.ValidationError:
    return exceptions.ValidationError({param: [exceptions.ErrorDetail(message, code=code)]})


class ObjectResponseMixin:
    """ETag, If-None-Match and Location on object responses; ``?brief`` and ``?fields`` on
    ``GET`` lists and details of a model serializer's representation."""

    schema = ObjectAutoSchema()
    object_responses = True  # read by ObjectAutoSchema
    _shown: models.Model | None = None

    # --- the object's URL and representation ---------------------------------------------------

    def detail_url(self, pk: Any, *, absolute: bool = True) -> str | None:
        """The (absolute) URL of the object ``pk`` of this viewset, if it has a detail route."""
        basename = getattr(self, "basename", None)
        if basename is None:
            return None
        lookup = self.lookup_url_kwarg or self.lookup_field
        request = self.request if absolute else None
        try:
            return reverse(f"{basename}-detail", kwargs={lookup: pk}, request=request)
        except NoReverseMatch:
            return None

    def has_detail_route(self) -> bool:
        return self.detail_url(0, absolute=False) is not None

    def detail_representation(self, instance: models.Model) -> dict[str, Any]:
        """``instance`` exactly as ``GET`` on its detail URL shows it (the ETag's input)."""
        action, self.action = self.action, "retrieve"
        try:
            serializer_class = self.get_serializer_class()
        finally:
            self.action = action
        return serializer_class(instance, context=self.get_serializer_context()).data

    def object_response(
        self, instance: models.Model, status_code: int = status.HTTP_200_OK
    ) -> Response:
        """The object as ``GET`` shows it, read again (annotations and all), with its ETag; a
        201 with its ``Location``."""
        fresh = self.get_queryset().filter(pk=instance.pk).first() or instance
        data = self.detail_representation(fresh)
        headers = {"ETag": conditional.entity_tag(fresh, data)}
        location = self.detail_url(fresh.pk) if status_code == status.HTTP_201_CREATED else None
        if location:
            headers["Location"] = location
        return Response(data, status=status_code, headers=headers)

    def get_object(self):
        self._shown = super().get_object()
        return self._shown

    # --- ?brief and ?fields ---------------------------------------------------------------------

    def shapes_responses(self) -> bool:
        """Whether this action's answer is a model serializer's representation to cut down."""
        if self.action not in SHAPED_ACTIONS:
            return False
        serializer_class = self.get_serializer_class()
        return isinstance(serializer_class, type) and issubclass(
            serializer_class, serializers.ModelSerializer
        )

    def _identity_field(self, name: str) -> serializers.Field | None:
        if name == "display":
            return serializers.CharField(source="__str__", read_only=True)
        if name == "url" and self.has_detail_route():
            return serializers.HyperlinkedIdentityField(view_name=f"{self.basename}-detail")
        return None

    def _offered_fields(self) -> dict[str, serializers.Field]:
        """Every field ``?fields`` may name, in the order responses show them: the serializer's,
        with ``url`` and ``display`` after ``id``."""
        if "_offered" in self.__dict__:
            return self._offered
        serializer = self.get_serializer_class()(context=self.get_serializer_context())
        own = dict(serializer.fields)
        identity = {n: f for n in IDENTITY_FIELDS if (f := self._identity_field(n)) is not None}
        names = list(own)
        at = names.index("id") + 1 if "id" in names else 0
        ordered = [*names[:at], *identity, *names[at:]]
        self._offered = {name: own.get(name) or identity[name] for name in ordered}
        return self._offered

    def requested_fields(self) -> list[str] | None:
        """The fields ``?brief`` or ``?fields`` ask for, in response order; None for all."""
        if "_requested" not in self.__dict__:
            self._requested = self._parse_requested_fields()
        return self._requested

    def _parse_requested_fields(self) -> list[str] | None:
        request = getattr(self, "request", None)
        if (
            request is None
            or getattr(self, "swagger_fake_view", False)
            or request.method not in ("GET", "HEAD")
            or not self.shapes_responses()
        ):
            return None
        params = request.query_params
        brief, wanted = params.get("brief"), params.get("fields")
        if brief is not None and brief.lower() not in _TRUE | _FALSE:
            raise _invalid("brief", f"use true or false, not {brief[:40]!r}")
        brief_on = brief is not None and brief.lower() in _TRUE
        if wanted is None:
            if not brief_on:
                return None
            declared = getattr(self.get_serializer_class().Meta, "brief_fields", ())
            chosen = {"id", *IDENTITY_FIELDS, *declared}
            return [name for name in self._offered_fields() if name in chosen]
        if brief_on:
            raise _invalid("fields", "use either brief or fields, not both", code="ambiguous")
        names = [name.strip() for name in wanted.split(",") if name.strip()]
        if not names:
            raise _invalid("fields", "name at least one field", code="required")
        offered = self._offered_fields()
        unknown = [name for name in names if name not in offered]
        if unknown:
            raise _invalid(
                "fields",
                f"unknown field {', '.join(repr(n[:40]) for n in unknown[:5])}; "
                f"choose from {', '.join(offered)}",
                code="unknown_field",
            )
        return [name for name in offered if name in names]

    def _restrict(self, serializer: serializers.BaseSerializer, names: list[str]) -> None:
        many = isinstance(serializer, serializers.ListSerializer)
        target = serializer.child if many else serializer
        fields = target.fields
        for name in [n for n in fields if n not in names]:
            del fields[name]
        for name in names:
            if name not in fields:
                field = self._identity_field(name)
                assert field is not None  # offered, so it can be made
                fields[name] = field
        ordered = {name: fields[name] for name in names}
        fields.fields.clear()  # BindingDict: keep the bound fields, in response order
        fields.fields.update(ordered)

    def _trim_prefetches(self, queryset: models.QuerySet, names: list[str]) -> models.QuerySet:
        """A list showing only ``names`` does not prefetch the relations none of them reads."""
        lookups = queryset._prefetch_related_lookups
        if not lookups:
            return queryset
        offered = self._offered_fields()
        sources = [offered[n].source for n in names if n not in IDENTITY_FIELDS]
        if any(source == "*" for source in sources):  # a method field may read anything
            return queryset
        roots = {str(source).split(".")[0] for source in sources}
        kept = [
            lookup
            for lookup in lookups
            if getattr(lookup, "prefetch_through", lookup).split("__")[0] in roots
        ]
        if len(kept) == len(lookups):
            return queryset
        return queryset.prefetch_related(None).prefetch_related(*kept)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.requested_fields()  # a bad ?brief or ?fields is a 400 before any work

    def get_queryset(self):
        queryset = super().get_queryset()
        names = self.requested_fields() if self.action == "list" else None
        return queryset if names is None else self._trim_prefetches(queryset, names)

    def get_serializer(self, *args, **kwargs):
        serializer = super().get_serializer(*args, **kwargs)
        names = self.requested_fields()
        if names is not None and "data" not in kwargs:
            self._restrict(serializer, names)
        return serializer

    # --- headers --------------------------------------------------------------------------------

    def finalize_response(self, request, response, *args, **kwargs):
        shown, data = self._shown, getattr(response, "data", None)
        if self.action == "retrieve" and shown is not None and response.status_code == 200:
            if isinstance(data, dict):
                full = data if self.requested_fields() is None else None
                etag = conditional.entity_tag(shown, full or self.detail_representation(shown))
                if request.method in ("GET", "HEAD") and conditional.if_none_match_fails(
                    request.headers.get("If-None-Match"), etag
                ):
                    response = HttpResponseNotModified()
                response["ETag"] = etag
        elif (
            self.action == "create"  # a 201 of another action (parts/) made no object of ours
            and response.status_code == status.HTTP_201_CREATED
            and "Location" not in response
            and isinstance(data, dict)
            and "id" in data
        ):
            location = self.detail_url(data["id"])
            if location:
                response["Location"] = location
        return super().finalize_response(request, response, *args, **kwargs)


class ScopedViewSetMixin(ObjectResponseMixin):
    """Scopes the queryset to the caller's tenants: others' objects are simply not there (404).

    ``tenant_fields``: lookups from the model to its owning tenant id, OR-ed together.
    """

    tenant_fields: tuple[str, ...] = ()
    read_roles = frozenset(Role)
    write_roles = frozenset({Role.PROVIDER_ADMIN})

    @property
    def actor(self) -> Actor:
        return actor_for(self.request.user)

    def get_queryset(self):
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):
            return queryset.none()
        return scope_queryset(queryset, self.actor, self.tenant_fields)


class ConditionalWritesMixin:
    """``If-Match`` on writes: a stale version is a 412, checked early and again under the
    write's row lock. ``update`` and ``destroy`` use it, and so may a custom action that changes
    the object: it names itself in ``conditional_actions`` (documented with ``If-Match`` and the
    412), and in ``object_actions`` if it answers with ``object_response`` (and so an ETag)."""

    conditional_actions: frozenset[str] = frozenset()
    object_actions: frozenset[str] = frozenset()

    def _refuse_stale(self, expected: str) -> PreconditionFailed:
        return PreconditionFailed(
            f"If-Match {expected[:80]!r} does not name the current version of this object; "
            "GET it again for its ETag",
            code="etag_mismatch",
            field="If-Match",
        )

    def _require_version(self, instance: models.Model, expected: str) -> None:
        current = conditional.entity_tag(instance, self.detail_representation(instance))
        if not conditional.if_match(expected, current):
            raise self._refuse_stale(expected)

    def check_if_match(self, instance: models.Model, expected: str | None) -> None:
        """Refuse (412) unless ``If-Match`` names ``instance``'s current ETag or is ``*``: the
        early answer, before the body is read. ``if_match_under_lock`` is the one that counts."""
        if expected is not None:
            self._require_version(instance, expected)

    @contextlib.contextmanager
    def if_match_under_lock(
        self, instance: models.Model, expected: str | None
    ) -> Iterator[Precondition | None]:
        """Check ``If-Match`` again once the write holds the row's lock, against the row as it
        is then: of two writers holding the same ETag, the second is a 412."""
        if expected is None:
            yield None
            return

        def check(stored: models.Model) -> None:
            fresh = self.get_queryset().filter(pk=stored.pk).first()
            if fresh is None:
                raise self._refuse_stale(expected)
            self._require_version(fresh, expected)

        with precondition(instance, check) as entry:
            yield entry
        if not entry.checked:  # the write did not go through save_object/delete_object
            logger.warning(
                "if_match_not_checked_under_lock", view=type(self).__name__, pk=instance.pk
            )


class AuditedModelViewSet(ConditionalWritesMixin, ScopedViewSetMixin, viewsets.ModelViewSet):
    """CRUD through the change services: validated by the model, audited, all-or-nothing."""

    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.perform_create(serializer)
        return self.object_response(serializer.instance, status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        partial = kwargs.pop("partial", False)
        instance = self.get_object()
        expected = request.headers.get("If-Match")
        self.check_if_match(instance, expected)  # a stale version is a 412 whatever the body
        serializer = self.get_serializer(instance, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        with self.if_match_under_lock(instance, expected):
            self.perform_update(serializer)
        return self.object_response(serializer.instance)

    def destroy(self, request, *args, **kwargs):
        instance = self.get_object()
        expected = request.headers.get("If-Match")
        self.check_if_match(instance, expected)
        with self.if_match_under_lock(instance, expected):
            self.perform_destroy(instance)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def save_instance(self, instance, ctx: ChangeContext):
        """Override to call a domain service (e.g. one that creates chips with a server)."""
        return save_object(instance, ctx)

    def delete_instance(self, instance, ctx: ChangeContext) -> None:
        delete_object(instance, ctx)

    def _check_target_tenant(self, instance) -> None:
        if not self.actor.can_write(getattr(instance, "owning_tenant_id", None), self.write_roles):
            raise exceptions.PermissionDenied("Your role may not change this.", code="role")

    def perform_create(self, serializer):
        model = serializer.Meta.model
        instance = model(**serializer.validated_data)
        self._check_target_tenant(instance)
        serializer.instance = self.save_instance(instance, change_context(self.request))

    def perform_update(self, serializer):
        instance = serializer.instance
        for name, value in serializer.validated_data.items():
            setattr(instance, name, value)
        self._check_target_tenant(instance)  # e.g. moving it into another tenant's rack
        serializer.instance = self.save_instance(instance, change_context(self.request))

    def perform_destroy(self, instance):
        self.delete_instance(instance, change_context(self.request))


class ScopedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A foreign key the caller may only point at objects it can see: another tenant's rack is
    'does not exist', exactly as if it did not."""

    def __init__(self, *, tenant_fields: tuple[str, ...], **kwargs):
        self.tenant_fields = tenant_fields
        super().__init__(**kwargs)

    def get_queryset(self):
        queryset = super().get_queryset()
        request = self.context.get("request")
        if request is None or not request.user.is_authenticated:
            return queryset.none()
        return scope_queryset(queryset, actor_for(request.user), self.tenant_fields)
