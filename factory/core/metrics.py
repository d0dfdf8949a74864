"""In-process metrics: what only the process that served a request sees (its route, status and
latency; a telemetry batch accepted or refused), as Prometheus counters and histograms.

Several gunicorn workers serve one site, and a scrape reaches any one of them. With
``PROMETHEUS_MULTIPROC_DIR`` set (before the process starts: prometheus_client reads it at
import), every process writes its values to files there and any worker's scrape sums them all:
prometheus_client's multiprocess mode. The directory must be emptied when the server starts
(docker-compose's web service does it), never while it runs: a dead worker's counts stay in
the sums, so counters never go back. Without the variable each process keeps its own plain
registry, which is right for one process (``runserver``, the test client).

The figures the database holds (the fleet, workflows, jobs, queues) are read at scrape time
instead: ``factory.telemetry.metrics``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

# ``*_created`` series double every counter's and histogram's series for nothing an alert uses.
disable_created_metrics()

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """Where the processes of one server share their values; None: a plain registry."""
    return os.environ.get(MULTIPROC_ENV) or None


if (_shared := multiprocess_dir()) is not None:
    # A missing directory would make every request fail at its first count.
    os.makedirs(_shared, exist_ok=True)

#: This process's own metrics. In multiprocess mode their values live in the shared files and
#: ``collect()`` reads those instead.
REGISTRY = CollectorRegistry(auto_describe=True)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # no route: a 404 for a path nothing serves
STATIC = "static"  # files WhiteNoise answers before any route is looked at

HTTP_REQUESTS = Counter(
    "factory_http_requests",
    "HTTP requests answered, by route (its URL name, never the raw path), method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
# No status label: buckets multiply series, and the counter already splits by status.
HTTP_LATENCY = Histogram(
    "factory_http_request_duration_seconds",
    "Time from the request entering the middleware stack to its response, by route and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)


def collect() -> Iterable[Metric]:
    """Every in-process family: summed over the server's processes in multiprocess mode."""
    shared = multiprocess_dir()
    if shared is None:
        yield from REGISTRY.collect()
        return
    yield from MultiProcessCollector(None, path=shared).collect()


def route_of(request: HttpRequest) -> str:
    """A bounded label for the request's route: the URL pattern's name (``site-detail``,
    ``admin:index``), the view's dotted path for an unnamed one, ``static`` or ``unmatched``.
    A raw path would make one series per object id."""
    match = getattr(request, "resolver_match", None)
    if match is None:  # answered before the URL was resolved (a 413, a static file)
        if request.path_info.startswith("/" + settings.STATIC_URL.lstrip("/")):
            return STATIC
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return UNMATCHED
    return match.view_name or match.route or UNMATCHED


class RequestMetricsMiddleware:
    """Counts and times every request. Sits near the outside of the stack, so that answers
    given by inner middleware (a 413, a rate limit, a static file) are counted too."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        method = request.method if request.method in METHODS else "other"
        route = route_of(request)
        HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
        HTTP_LATENCY.labels(route, method).observe(elapsed)
        return response
