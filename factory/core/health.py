"""Liveness and readiness for load balancers and orchestrators.

``/healthz`` answers when the process can serve; ``/readyz`` also checks the database and the
broker, and answers 503 naming the one that failed.

Other components' health (the scheduler's, registered by ``provisioning``) is *reported* in
``/readyz`` but does not gate it: a dead beat must not take every web replica out of the load
balancer. Each is answered alone at ``/readyz/<name>``, 503 when failing, for whatever watches
that component (a monitor, an orchestrator's probe of the beat replicas).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import Http404, JsonResponse
from django.views.decorators.http import require_safe
from kombu import Connection

#: Reported, not gating: name → check (None when healthy, else why not).
_REPORTED: dict[str, Callable[[], str | None]] = {}


def report(name: str, check: Callable[[], str | None]) -> None:
    """Show ``check`` in ``/readyz`` (without gating it) and at ``/readyz/<name>``."""
    _REPORTED[name] = check


def _run(check: Callable[[], str | None]) -> str | None:
    try:
        return check()
    except Exception as exc:  # a check that cannot tell says so
        return f"{type(exc).__name__}: {exc}"


@require_safe
def healthz(request):
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means not ready
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_broker() -> str | None:
    try:
        with Connection(
            settings.CELERY_BROKER_URL,
            transport_options=getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}),
            connect_timeout=2,
        ) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@require_safe
def readyz(request):
    checks = {"database": _check_database(), "broker": _check_broker()}
    failed = {name: reason for name, reason in checks.items() if reason}
    reported = {name: _run(check) for name, check in _REPORTED.items()} if not failed else {}
    body = {
        "status": "ok" if not failed else "unavailable",
        "checks": {name: (reason if reason else "ok") for name, reason in checks.items()},
    }
    if reported:
        body["reported"] = {name: (reason if reason else "ok") for name, reason in reported.items()}
    return JsonResponse(body, status=503 if failed else 200)


@require_safe
def readyz_component(request, name: str):
    """One reported component alone: 200 when healthy, 503 naming why not."""
    check = _REPORTED.get(name)
    if check is None:
        raise Http404(f"no readiness check {name!r}")
    reason = _run(check)
    body = {"status": "ok" if reason is None else "unavailable", "check": name}
    if reason is not None:
        body["reason"] = reason
    return JsonResponse(body, status=503 if reason else 200)
