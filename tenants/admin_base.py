"""Admin writes go through the same change services as the API: validated, locked, audited."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from tenants.access import actor_for
from tenants.choices import AuditSource
from tenants.django_errors import add_to_form, as_domain_error
from tenants.errors import DomainError
from tenants.services.changes import ChangeContext, delete_object, save_object

#: Where a refused save is kept on the request while the change form is shown again.
_REFUSAL = "_admin_refusal"
#: Objects Django asked to log as deleted, kept until the delete has really happened.
_PENDING_DELETIONS = "_admin_pending_deletions"


class _Refused(Exception):
    """A save or delete the services refused, carried out of the admin's transaction (which
    it rolls back: nothing of the attempt is written)."""

    def __init__(self, error: DomainError, verb: str) -> None:
        super().__init__(error.message)
        self.error, self.verb = error, verb


@contextmanager
def _refusals(verb: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        error = as_domain_error(exc)
        if error is None:
            raise
        raise _Refused(error, verb) from exc


def _refused_form(form_class: type[forms.BaseForm], error: DomainError) -> type[forms.BaseForm]:
    """``form_class``, invalid with ``error``'s reasons on the fields they name."""

    def clean(self: forms.BaseForm) -> dict[str, Any] | None:
        cleaned = form_class.clean(self)
        add_to_form(self, error)
        return cleaned

    return type(form_class.__name__, (form_class,), {"clean": clean})


def admin_context(request: HttpRequest) -> ChangeContext:
    return ChangeContext(
        actor=actor_for(request.user),
        source=AuditSource.ADMIN,
        request_id=getattr(request, "request_id", ""),
    )


class AuditedModelAdmin(admin.ModelAdmin):
    """Saves and deletes through the change services. A refusal (a domain error, or Django's
    ValidationError / ProtectedError / ... from ``full_clean()`` and the services) is never a
    500: on the change form it becomes errors on the fields it names and the form is shown
    again (200, nothing written); a refused delete or list edit becomes an error message."""

    #: Fields the system writes (its clocks, hashes, leases, what agents report): shown,
    #: never edited. Added to ``readonly_fields`` with every ``*_at`` timestamp Django fills.
    system_fields: tuple[str, ...] = ()
    #: False where a bulk delete would be refused anyway (protected objects): no
    #: "delete selected" action to offer a person a promise the services will break.
    bulk_delete = True

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        declared = list(super().get_readonly_fields(request, obj))
        stamped = [
            f.name
            for f in self.model._meta.fields
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
        ]
        extra = [n for n in (*self.system_fields, *stamped) if n not in declared]
        return [*declared, *extra]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not self.bulk_delete:
            actions.pop("delete_selected", None)
        return actions

    def save_instance(self, obj: Any, ctx: ChangeContext) -> Any:
        return save_object(obj, ctx)

    def delete_instance(self, obj: Any, ctx: ChangeContext) -> None:
        delete_object(obj, ctx)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        with _refusals("saved"):
            self.save_instance(obj, admin_context(request))

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        with _refusals("saved"):
            super().save_related(request, form, formsets, change)

    def log_deletions(self, request: HttpRequest, queryset: Any) -> None:
        """Django logs a deletion before it deletes (and, for the bulk action, outside any
        transaction); a refused delete must leave no "deleted" entry, so the entries are
        written in the delete's own transaction, which a refusal rolls back."""
        setattr(request, _PENDING_DELETIONS, list(queryset))

    def _log_pending_deletions(self, request: HttpRequest) -> None:
        pending = getattr(request, _PENDING_DELETIONS, None)
        if pending:
            super().log_deletions(request, pending)
        setattr(request, _PENDING_DELETIONS, None)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with _refusals("deleted"), transaction.atomic():
            self._log_pending_deletions(request)  # before: the deleted object loses its pk
            self.delete_instance(obj, admin_context(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        ctx = admin_context(request)
        with _refusals("deleted"), transaction.atomic():
            self._log_pending_deletions(request)
            for obj in queryset:
                self.delete_instance(obj, ctx)

    def get_form(
        self,
        request: HttpRequest,
        obj: models.Model | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> Any:
        form_class = super().get_form(request, obj, change, **kwargs)
        refusal: DomainError | None = getattr(request, _REFUSAL, None)
        return form_class if refusal is None else _refused_form(form_class, refusal)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _Refused as refused:
            # The attempt was rolled back with the admin's transaction. The same form again,
            # bound to what was posted, now invalid with the refusal's reasons.
            setattr(request, _REFUSAL, refused.error)
            return super().changeform_view(request, object_id, form_url, extra_context)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except _Refused as refused:
            self._refused_message(request, refused)
            return HttpResponseRedirect(request.path.rsplit("/delete/", 1)[0] + "/change/")

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().changelist_view(request, extra_context)
        except _Refused as refused:  # a list edit or a bulk delete: all of it rolled back
            self._refused_message(request, refused)
            return HttpResponseRedirect(request.get_full_path())

    def _refused_message(self, request: HttpRequest, refused: _Refused) -> None:
        reasons = "; ".join(refused.error.sentences())
        self.message_user(request, f"Not {refused.verb}: {reasons}", messages.ERROR)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Look, never touch: append-only logs, and records that change only through their own
    services (the catalog by migration, rules through the API)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    """Rows shown for context on their parent's page: each is changed (if at all) on its own
    page, through its services."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False
