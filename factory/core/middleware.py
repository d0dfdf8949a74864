"""Request ids, the client's address behind a proxy, body size limits and HEAD answers.

Request ids: taken from ``X-Request-ID`` when a proxy set a sane one, made up otherwise. The id
is bound to structlog's context (so every log line of the request carries it), stored on the
request for the audit log, and echoed in the response.
"""

from __future__ import annotations

import re
import uuid

import structlog
from django.conf import settings

from factory.core.errors import error_response
from factory.core.limits import body_limit, too_large

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def current_request_id(request) -> str:
    return getattr(request, "request_id", "") or ""


class ClientAddressMiddleware:
    """``REMOTE_ADDR`` is the client's, not the front's: behind ``TRUSTED_PROXY_COUNT`` proxies
    (compose: 1, the nginx front, which sets ``X-Forwarded-For`` to the address it saw) it is
    that many entries from the end of ``X-Forwarded-For``. Rate limits and log-in lockouts key
    on it, so without this every client would share the front's address (one person's bad
    passwords locking everyone out). The header is then dropped: nothing downstream trusts what
    a client wrote there (with no proxy configured, it is ignored)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        forwarded = request.META.pop("HTTP_X_FORWARDED_FOR", "")
        count = int(settings.TRUSTED_PROXY_COUNT)
        if count > 0 and forwarded:
            hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
            if len(hops) >= count:
                request.META["REMOTE_ADDR"] = hops[-count]
        return self.get_response(request)


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        supplied = request.headers.get("X-Request-ID", "")
        request.request_id = supplied if _SAFE_ID.match(supplied) else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request.request_id)
        try:
            response = self.get_response(request)
        finally:
            structlog.contextvars.clear_contextvars()
        response["X-Request-ID"] = request.request_id
        return response


class RequestBodyLimitMiddleware:
    """413 for a body over its path's limit (``factory.core.limits.body_limit``), judged from
    ``Content-Length`` before anything reads the body. (Without a ``Content-Length`` Django
    reads no body at all.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0  # Django reads such a body as empty, too
        limit = body_limit(request.path_info)
        if length > limit:
            return error_response(request, too_large(length, limit))
        return self.get_response(request)


class HeadWithoutBodyMiddleware:
    """A HEAD answer is the GET answer without its body, everywhere (API, console, admin,
    health): same status and headers, ``Content-Length`` that of the body not sent. Neither
    Django nor gunicorn drops the body, and a body after a HEAD answer corrupts the next answer
    on a kept-alive connection. Outermost, so that every other middleware has had its say."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.method != "HEAD":
            return response
        if response.streaming:
            # A FileResponse's file stays registered to be closed with the response, and is no
            # longer its ``file_to_stream``: WSGI's file_wrapper (gunicorn's sendfile) skips it.
            response.streaming_content = iter(())
        else:
            if not response.has_header("Content-Length"):
                response["Content-Length"] = str(len(response.content))
            response.content = b""
        return response
