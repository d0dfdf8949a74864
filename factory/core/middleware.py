"""Request ids: taken from ``X-Request-ID`` when a proxy set a sane one, made up otherwise.

The id is bound to structlog's context (so every log line of the request carries it), stored on
the request for the audit log, and echoed in the response.
"""

from __future__ import annotations

import re
import uuid

import structlog

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def current_request_id(request) -> str:
    return getattr(request, "request_id", "") or ""


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
