"""Django's own refusals read as domain errors, so that every surface (the API's exception
handler, the admin, the console) turns one kind of thing into its answer.

Model ``clean()`` keeps raising Django's ``ValidationError`` (that is what ``full_clean()`` and
model forms expect); deleting a protected row raises ``ProtectedError``; the database raises
``IntegrityError`` when a uniqueness race is lost. ``as_domain_error`` maps each to its class:

    ValidationError → Invalid · PermissionDenied → Denied · Http404, DoesNotExist → NotFound
    ProtectedError, RestrictedError, IntegrityError → Conflict · DataError → Invalid

and one that is no refusal but the service's state, never a 500 either: a statement the
database cancelled (``statement_timeout``, ``DATABASE_STATEMENT_TIMEOUT_MS``) → Unavailable
(503, ``Retry-After``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db import DataError, IntegrityError, OperationalError
from django.db.models import ProtectedError, RestrictedError
from django.forms import BaseForm
from django.http import Http404

from tenants.errors import (
    Conflict,
    Denied,
    DomainError,
    FieldError,
    Invalid,
    NotFound,
    Unavailable,
)

logger = logging.getLogger(__name__)

__all__ = [
    "REFUSALS",
    "add_to_form",
    "as_domain_error",
    "field_errors",
    "from_validation_error",
    "refuse_on_form",
]

#: Every exception ``as_domain_error`` reads as a refusal, for an ``except`` clause.
REFUSALS: tuple[type[Exception], ...] = (
    DomainError,
    ValidationError,
    ProtectedError,
    RestrictedError,
    DataError,
    IntegrityError,
    Http404,
    ObjectDoesNotExist,
    PermissionDenied,
)


def _text(error: ValidationError) -> str:
    message = str(error.message)
    return message % error.params if error.params else message


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Each message of a Django ``ValidationError`` with its field (``None`` for ``__all__``
    and for errors not bound to a field) and its code (``invalid`` when it has none)."""
    if hasattr(exc, "error_dict"):
        return [
            FieldError(None if field == "__all__" else field, e.code or "invalid", _text(e))
            for field, errors in exc.error_dict.items()
            for e in errors
        ]
    return [FieldError(None, e.code or "invalid", _text(e)) for e in exc.error_list]


def from_validation_error(exc: ValidationError) -> Invalid:
    return Invalid(errors=field_errors(exc) or [FieldError(None, "invalid", "Invalid.")])


def _in_use(exc: ProtectedError | RestrictedError) -> Conflict:
    # Model and key only: the collector loads these objects with deferred fields, and str()
    # would query again (and fail, if a concurrent request just deleted the row).
    names = sorted({f"{obj._meta.verbose_name} {obj.pk}" for obj in list(exc.args[1])[:5]})
    return Conflict(f"still in use by: {', '.join(names)}", code="protected")


def as_domain_error(exc: BaseException) -> DomainError | None:
    """``exc`` as a domain error, or ``None`` if it is not a refusal (a bug: let it be a 500)."""
    if isinstance(exc, DomainError):
        return exc
    if isinstance(exc, ValidationError):
        return from_validation_error(exc)
    if isinstance(exc, ProtectedError | RestrictedError):
        return _in_use(exc)
    if isinstance(exc, DataError):
        # A value the database cannot take (out of range, bad encoding): the input's fault.
        logger.warning("database rejected a value: %s", (str(exc).splitlines() or [""])[0])
        return Invalid("a value is out of the range the database accepts", code="invalid_value")
    if isinstance(exc, IntegrityError):
        return Conflict("conflicts with an existing record", code="integrity_conflict")
    if isinstance(exc, Http404 | ObjectDoesNotExist):
        # ObjectDoesNotExist: it vanished mid-request (deleted by a concurrent request). The
        # message stays generic: another tenant's object is "not found", nothing more.
        return NotFound()
    if isinstance(exc, PermissionDenied):
        return Denied(str(exc) or None)
    if isinstance(exc, OperationalError) and _cancelled(exc):
        logger.warning("statement cancelled: %s", (str(exc).splitlines() or [""])[0])
        return Unavailable(
            "The request took longer than the database allows and was cancelled; try again "
            "shortly, or ask for less (a narrower filter, a smaller page).",
            code="statement_timeout",
            retry_after=5,
        )
    return None


def _cancelled(exc: OperationalError) -> bool:
    """PostgreSQL cancelled the statement (SQLSTATE 57014: its timeout, or an operator)."""
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) == "57014"


def add_to_form(
    form: BaseForm, error: DomainError, renamed: Mapping[str, str] | None = None
) -> None:
    """Put each reason of ``error`` on ``form``: on its field when the form shows that field
    (the field ``renamed`` maps its name to, if any), as a form-wide error (led by the name the
    reason gave) otherwise. The form is then invalid."""
    renamed = renamed or {}
    for reason in error.errors:
        field = renamed.get(reason.field, reason.field) if reason.field is not None else None
        if field is not None and field in form.fields:
            form.add_error(field, ValidationError(reason.message, code=reason.code))
        else:
            text = f"{reason.field}: {reason.message}" if reason.field else reason.message
            form.add_error(None, ValidationError(text, code=reason.code))


def refuse_on_form(
    form: BaseForm, refused: BaseException, renamed: Mapping[str, str] | None = None
) -> None:
    """Show a service's refusal (any of ``REFUSALS``) on ``form``, as ``add_to_form`` does.
    Anything else is not a refusal but a bug: raised again."""
    error = as_domain_error(refused)
    if error is None:
        raise refused
    add_to_form(form, error, renamed)
