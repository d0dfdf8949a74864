"""One error shape for the whole API.

    {"status": 400, "code": "invalid", "message": "...",
     "errors": [{"field": "rack", "code": "power_budget_exceeded", "message": "..."}]}

``field`` is null for errors about the request as a whole. Django's ValidationError (raised by
model ``clean()`` and services) becomes a 400; deleting something others still depend on, and
database uniqueness races, become 409 Conflict; nothing becomes a 500.
"""

from __future__ import annotations

import structlog
from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from tenants.services.changes import ChangeRefused
from tenants.sovereignty.services import SovereigntyDenied

logger = structlog.get_logger(__name__)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


def django_validation_error_to_drf(exc: DjangoValidationError) -> exceptions.ValidationError:
    """Keep the codes of Django's errors (DRF's own conversion drops them)."""

    def detail(err: DjangoValidationError):
        return [
            exceptions.ErrorDetail(
                (e.message % e.params) if e.params else str(e.message), code=e.code or "invalid"
            )
            for e in err.error_list
        ]

    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError(
            {
                ("non_field_errors" if field == "__all__" else field): detail(
                    DjangoValidationError(errors)
                )
                for field, errors in exc.error_dict.items()
            }
        )
    return exceptions.ValidationError(detail(exc))


def _flatten(detail, field: str | None = None) -> list[dict]:
    """Turn DRF's nested error detail into a flat list naming each field by its dotted path."""
    if isinstance(detail, dict):
        out: list[dict] = []
        for key, value in detail.items():
            name = None if key in ("non_field_errors", "detail") else str(key)
            path = f"{field}.{name}" if field and name else (name or field)
            out.extend(_flatten(value, path))
        return out
    if isinstance(detail, list):
        out = []
        for index, value in enumerate(detail):
            path = field
            if isinstance(value, dict | list) and field is not None:
                path = f"{field}.{index}"
            out.extend(_flatten(value, path))
        return out
    return [{"field": field, "code": getattr(detail, "code", "invalid"), "message": str(detail)}]


_MESSAGES = {
    400: "The request is invalid.",
    401: "Authentication is required.",
    403: "You are not allowed to do this.",
    404: "Not found.",
    405: "Method not allowed.",
    406: "Not acceptable.",
    409: "The request conflicts with the current state.",
    415: "Unsupported media type.",
    429: "Too many requests.",
}


def error_body(status_code: int, code: str, errors: list[dict], message: str | None = None):
    return {
        "status": status_code,
        "code": code,
        "message": message or (errors[0]["message"] if errors else _MESSAGES.get(status_code, "")),
        "errors": errors,
    }


def _pairs(decision) -> list[tuple[str, str]]:
    """(rule id, sentence) for each deciding rule; reasons alone when it failed closed."""
    if len(decision.rule_ids) == len(decision.reasons):
        return list(zip(decision.rule_ids, decision.reasons, strict=True))
    return [("", reason) for reason in decision.reasons]


def api_exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = django_validation_error_to_drf(exc)
    elif isinstance(exc, ProtectedError | RestrictedError):
        # Model and key only: the collector loads these objects with deferred fields, and str()
        # would query again (and fail, if a concurrent request just deleted the row).
        names = sorted({f"{obj._meta.verbose_name} {obj.pk}" for obj in list(exc.args[1])[:5]})
        exc = Conflict(
            detail={
                "non_field_errors": [
                    exceptions.ErrorDetail(f"still in use by: {', '.join(names)}", code="protected")
                ]
            }
        )
    elif isinstance(exc, DataError):
        # A value the database cannot take (out of range, bad encoding): the input's fault.
        logger.warning("database rejected a value", error=str(exc).splitlines()[0])
        exc = exceptions.ValidationError(
            {
                "non_field_errors": [
                    exceptions.ErrorDetail(
                        "a value is out of the range the database accepts", code="invalid_value"
                    )
                ]
            }
        )
    elif isinstance(exc, IntegrityError):
        exc = Conflict(
            detail={
                "non_field_errors": [
                    exceptions.ErrorDetail(
                        "conflicts with an existing record", code="integrity_conflict"
                    )
                ]
            }
        )
    elif isinstance(exc, ChangeRefused):
        exc = Conflict(
            detail={
                exc.field or "non_field_errors": [
                    exceptions.ErrorDetail(exc.message, code=exc.code)
                ]
            }
        )
    elif isinstance(exc, SovereigntyDenied):
        exc = exceptions.PermissionDenied(
            detail={
                "non_field_errors": [
                    exceptions.ErrorDetail(
                        f"{rule_id}: {reason}" if rule_id else reason, code="sovereignty_denied"
                    )
                    for rule_id, reason in _pairs(exc.decision)
                ]
            }
        )
        exc.default_code = "sovereignty_denied"
    elif isinstance(exc, Http404 | ObjectDoesNotExist):
        # ObjectDoesNotExist: it vanished mid-request (deleted by a concurrent request).
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = getattr(exc, "default_code", "error")
    if isinstance(exc, exceptions.ValidationError):
        code = "invalid"
    elif isinstance(exc.detail, exceptions.ErrorDetail) and exc.detail.code:
        code = exc.detail.code
    errors = _flatten(exc.detail)
    body = error_body(response.status_code, code, errors)
    headers = {
        k: v for k, v in response.items() if k in ("WWW-Authenticate", "Retry-After", "Allow")
    }
    return Response(body, status=response.status_code, headers=headers)


def json_404(request, exception=None):
    body = error_body(
        404, "not_found", [{"field": None, "code": "not_found", "message": "Not found."}]
    )
    return JsonResponse(body, status=404)


def json_500(request):
    body = error_body(
        500, "server_error", [{"field": None, "code": "server_error", "message": "Server error."}]
    )
    return JsonResponse(body, status=500)
