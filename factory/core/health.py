"""Liveness and readiness for load balancers and orchestrators.

``/healthz`` answers when the process can serve; ``/readyz`` also checks the database and the
broker, and answers 503 naming the one that failed.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_safe
from kombu import Connection


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
    body = {
        "status": "ok" if not failed else "unavailable",
        "checks": {name: (reason if reason else "ok") for name, reason in checks.items()},
    }
    return JsonResponse(body, status=503 if failed else 200)
