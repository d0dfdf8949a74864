"""The front doors a person or a client tries first: ``/``, ``/favicon.ico`` and ``/api/v1/``.

``/`` leads people to the console (which asks them to log in first); ``/api/v1/`` lists the
API's collection endpoints the way DRF's browsable root does, so a client can discover them
without reading the schema.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, URLResolver
from django.views.decorators.http import require_safe
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

FAVICON = Path(__file__).resolve().parent / "static" / "favicon.ico"


@require_safe
def root(request: HttpRequest) -> HttpResponse:
    return HttpResponseRedirect("/console/")


@cache
def _favicon_bytes() -> bytes:
    return FAVICON.read_bytes()


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(_favicon_bytes(), content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response


def _pattern_route(pattern: URLPattern | URLResolver) -> str | None:
    """The literal route of a pattern, or None if it takes parameters (a detail endpoint)."""
    if pattern.pattern.regex.groups:
        return None
    return str(pattern.pattern).removeprefix("^").removesuffix("$")


def collection_routes(patterns: list, prefix: str = "") -> dict[str, str]:
    """``{name: route}`` for every parameterless route below ``patterns``; the name is the route
    without its slashes at the ends (``sovereignty/rules``), stable as long as the URL is."""
    routes: dict[str, str] = {}
    for pattern in patterns:
        route = _pattern_route(pattern)
        if route is None:
            continue
        if isinstance(pattern, URLResolver):
            routes.update(collection_routes(pattern.url_patterns, prefix + route))
        elif route:
            routes.setdefault((prefix + route).strip("/"), prefix + route)
    return dict(sorted(routes.items()))


class ApiRootView(APIView):
    """The API root: every collection endpoint by name, with its absolute URL."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    patterns: list = []
    base = "/api/v1/"

    @extend_schema(
        operation_id="api_root",
        responses=inline_serializer(
            "ApiRoot",
            {
                "endpoints": serializers.DictField(child=serializers.URLField()),
                "schema": serializers.URLField(),
                "docs": serializers.URLField(),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        absolute = request.build_absolute_uri
        return Response(
            {
                "endpoints": {
                    name: absolute(self.base + route)
                    for name, route in collection_routes(self.patterns).items()
                },
                "schema": absolute("/api/schema/"),
                "docs": absolute("/api/docs/"),
            }
        )
