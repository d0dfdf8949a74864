"""One error shape for the whole API, and the one place domain errors become HTTP answers.

    {"status": 400, "code": "invalid", "message": "...",
     "errors": [{"field": "rack", "code": "power_budget_exceeded", "message": "..."}]}

``field`` is null for errors about the request as a whole. Services refuse with the domain
errors of ``tenants.errors`` (Invalid 400, Unauthenticated 401, Denied 403, NotFound 404,
Conflict 409, PreconditionFailed 412, TooManyRequests 429); Django's own refusals
(``ValidationError`` from model ``clean()``, ``ProtectedError``, a lost uniqueness race, ...)
are read as the same classes by ``tenants.django_errors.as_domain_error``. Here they are
answered:

- in the API by ``api_exception_handler`` (DRF's ``EXCEPTION_HANDLER``): the JSON body;
- in plain Django views by ``DomainErrorMiddleware`` and the project's 400/403/404/500
  handlers: an HTML page where ``settings.HTML_ERROR_PAGES`` names templates for the path (the
  console's), the JSON body elsewhere.

Views do not catch refusals to answer them themselves; nothing of this kind becomes a 500.
Nor does input that got past every check and broke something anyway: a ``RecursionError``
(nesting too deep) or an ``OverflowError`` (a number a database driver cannot bind) is a 400
(``_last_resort``). A body over its limit (``factory.core.limits``) is a 413, a rate limit
exceeded (``factory.core.throttling``) a 429.
"""

from __future__ import annotations

from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.utils.html import escape
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from factory.core import throttling
from factory.core.limits import BIGINT_MAX, BIGINT_MIN, out_of_range_params
from tenants.access import actor_for
from tenants.django_errors import as_domain_error
from tenants.errors import Denied, DomainError, FieldError, Invalid, NotFound

logger = structlog.get_logger(__name__)


def _flatten(detail: Any, field: str | None = None) -> list[dict[str, Any]]:
    """Turn DRF's nested error detail into a flat list naming each field by its dotted path."""
    if isinstance(detail, dict):
        out: list[dict[str, Any]] = []
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
    413: "The request body is too large.",
    415: "Unsupported media type.",
    429: "Too many requests.",
}


def error_body(
    status_code: int, code: str, errors: list[dict[str, Any]], message: str | None = None
) -> dict[str, Any]:
    return {
        "status": status_code,
        "code": code,
        "message": message or (errors[0]["message"] if errors else _MESSAGES.get(status_code, "")),
        "errors": errors,
    }


def _headers_of(error: DomainError) -> dict[str, str] | None:
    """A refusal's HTTP headers: ``Retry-After`` for a ``TooManyRequests`` that says when."""
    retry_after = getattr(error, "retry_after", None)
    return {"Retry-After": str(retry_after)} if retry_after else None


def _last_resort(exc: BaseException, request: Any) -> DomainError | None:
    """Input that got past every check and broke something: still the input's fault, a 400.
    ``RecursionError``: data nested too deep for some recursive code. ``OverflowError``: an
    integer the database driver cannot bind (SQLite: past 64 bits), named if it is a query
    parameter or a path part."""
    if isinstance(exc, RecursionError):
        logger.warning("recursion limit reached on a request's input")
        return Invalid("The request is nested too deeply to process.", code="too_deep")
    if isinstance(exc, OverflowError):
        logger.warning("numeric overflow on a request's input", error=str(exc))
        message = f"Must be a whole number from {BIGINT_MIN} to {BIGINT_MAX}."
        names = out_of_range_params(request) if request is not None else []
        reasons = [FieldError(name, "out_of_range", message) for name in names] or [
            FieldError(None, "out_of_range", "A number in the request is out of range.")
        ]
        return Invalid(errors=reasons, code="out_of_range")
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    request = context.get("request")
    if isinstance(exc, exceptions.AuthenticationFailed) and request is not None:
        exc = throttling.refused_credential(request, exc)  # past its budget: a 429
    error = as_domain_error(exc) or _last_resort(exc, request)
    if error is not None:
        set_rollback()
        return Response(error.as_dict(), status=error.status, headers=_headers_of(error))

    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
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


# --- plain Django views (the console, the admin, health) ------------------------------------


def _html_pages(request: HttpRequest) -> str | None:
    """The template directory of the HTML error pages for this path, if it has any."""
    pages: dict[str, str] = getattr(settings, "HTML_ERROR_PAGES", {})
    for prefix, directory in pages.items():
        if request.path.startswith(prefix):
            return directory
    return None


def error_response(request: HttpRequest, error: DomainError) -> HttpResponse:
    """``error`` answered to a plain Django request: the HTML page of its status where the path
    has pages (``<dir>/<status>.html``, else ``<dir>/error.html``), the JSON body elsewhere."""
    directory = _html_pages(request)
    if directory is None:
        return JsonResponse(error.as_dict(), status=error.status)
    context: dict[str, Any] = {"error": error, "status": error.status}
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        context["actor"] = actor_for(user)
    template = loader.select_template(
        [f"{directory}/{error.status}.html", f"{directory}/error.html"]
    )
    return HttpResponse(template.render(context, request), status=error.status)


class DomainErrorMiddleware:
    """Answers a refusal raised in a plain Django view (DRF views answer their own). Http404 and
    PermissionDenied are left to Django, whose handlers (below) answer them the same way."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, Http404 | DjangoPermissionDenied):
            return None
        error = as_domain_error(exception) or _last_resort(exception, request)
        return None if error is None else error_response(request, error)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _html_pages(request) is None:
        return defaults.bad_request(request, exception)
    return error_response(
        request, Invalid("The request could not be understood.", code="bad_request")
    )


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _html_pages(request) is None:
        return defaults.permission_denied(request, exception)
    return error_response(request, Denied(str(exception) or None))


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, NotFound())


class _ServerError(DomainError):
    status = 500
    default_code = "server_error"
    default_message = "Server error."


def server_error(request: HttpRequest) -> HttpResponse:
    """Never a traceback. Rendered with as little as possible: the failure may be the database."""
    error = _ServerError()
    try:
        return error_response(request, error)
    except Exception:
        logger.exception("the 500 page failed to render")
        return HttpResponse(
            f"<!doctype html><title>Server error</title><h1>Server error</h1>"
            f"<p>{escape(error.message)} It has been logged.</p>",
            status=500,
        )
