"""The domain's errors: one set for every layer, free of Django so that pure cores raise them too.

A service refuses by raising one of these; where it surfaces decides the form (the API's JSON
error body in ``factory.core.errors``, a form error or message in the admin, an HTML page in
the console). Each class is one HTTP status and nothing else:

    Invalid 400 · Unauthenticated 401 · Denied 403 · NotFound 404 · Conflict 409 ·
    PreconditionFailed 412 · TooManyRequests 429

They live here, in the bottom layer (``tenants`` ← ``factory`` ← ``provisioning``), because
tenants' own services raise them and tenants may import nothing above it; importing no Django,
they are open to every module of every layer, pure cores included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "Conflict",
    "Denied",
    "DomainError",
    "FieldError",
    "Invalid",
    "NotFound",
    "PreconditionFailed",
    "TooManyRequests",
    "Unauthenticated",
]


@dataclass(frozen=True)
class FieldError:
    """One reason: the input it is about (a dotted path; ``None`` for the request as a whole),
    a stable machine-readable code and a sentence for people."""

    field: str | None
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "code": self.code, "message": self.message}


class DomainError(Exception):
    """A refusal with reasons. ``code`` names the refusal as a whole; ``errors`` lists each
    reason (at least one). The common case is one reason::

        raise Conflict("rack R01 still holds 2 UltraServers", code="rack_in_use", field="rack")

    and several are given as ``errors=[FieldError(...), ...]``.
    """

    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "invalid"
    default_message: ClassVar[str] = "The request is invalid."

    message: str
    code: str
    errors: tuple[FieldError, ...]

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        field: str | None = None,
        errors: Iterable[FieldError] = (),
    ) -> None:
        reasons = tuple(errors)
        if message is None:
            message = reasons[0].message if reasons else self.default_message
        self.message = message
        self.code = code or self.default_code
        self.errors = reasons or (FieldError(field, self.code, message),)
        super().__init__(message)

    @property
    def field(self) -> str | None:
        """The field of the first reason (``None``: about the request as a whole)."""
        return self.errors[0].field

    def sentences(self) -> list[str]:
        """Each reason for people, led by the field it is about (when it names one)."""
        return [f"{e.field}: {e.message}" if e.field else e.message for e in self.errors]

    def as_dict(self) -> dict[str, Any]:
        """The API's error body: ``{"status", "code", "message", "errors": [...]}``."""
        return {
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "errors": [error.as_dict() for error in self.errors],
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class Invalid(DomainError):
    """400: the input is wrong (nothing was written)."""

    status = 400
    default_code = "invalid"
    default_message = "The request is invalid."


class Unauthenticated(DomainError):
    """401: the credentials given (a password exchanged for a token) are wrong."""

    status = 401
    default_code = "not_authenticated"
    default_message = "Authentication is required."


class Denied(DomainError):
    """403: the caller may not do this (a role, a token's scope, a sovereignty rule)."""

    status = 403
    default_code = "permission_denied"
    default_message = "You are not allowed to do this."


class NotFound(DomainError):
    """404: missing, or another tenant's (which is never told apart from missing)."""

    status = 404
    default_code = "not_found"
    default_message = "Not found."


class Conflict(DomainError):
    """409: the request conflicts with the current state (a lifecycle refusal, an object
    others still depend on, a server already held by a workflow)."""

    status = 409
    default_code = "conflict"
    default_message = "The request conflicts with the current state."


class PreconditionFailed(DomainError):
    """412: a condition the caller stated (e.g. the version it last saw) no longer holds."""

    status = 412
    default_code = "precondition_failed"
    default_message = "A precondition of the request does not hold."


class _RetryLater(DomainError):
    """A refusal that says when to try again (``retry_after`` seconds: ``Retry-After``)."""

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: int | None = None,
        code: str | None = None,
        field: str | None = None,
        errors: Iterable[FieldError] = (),
    ) -> None:
        super().__init__(message, code=code, field=field, errors=errors)
        self.retry_after = retry_after


class TooManyRequests(_RetryLater):
    """429: too many attempts (e.g. failed log-ins); ``retry_after`` says when to try again."""

    status = 429
    default_code = "throttled"
    default_message = "Too many requests."


class Unavailable(_RetryLater):
    """503: not the request's fault, the service's state: its work took longer than the
    database allows (``statement_timeout``) and was cancelled. Try again later."""

    status = 503
    default_code = "unavailable"
    default_message = "The service is busy; try again shortly."


def required_text(value: object, field: str = "reason", *, max_length: int = 500) -> str:
    """The one check for a person's required words (a reason to pause, cancel, retry or
    revoke; a note on a fault): blank is refused naming ``field`` (code ``required``), and
    what is kept is stripped and cut to the column's length."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise Invalid(f"{field} is required: say why", code="required", field=field)
    return text[:max_length]
