"""Test settings: real PostgreSQL and Redis (defaults: the ones on this machine)."""

import hashlib
import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/factory")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")

from factory.settings.base import *  # noqa: F403
from factory.settings.base import BASE_DIR, DATABASES, RATE_LIMITS, celery_routing

DATABASES["default"]["CONN_MAX_AGE"] = 0
# One test database per checkout: two clones on one machine never drop each other's.
_checkout = hashlib.sha1(str(BASE_DIR).encode()).hexdigest()[:8]
DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{_checkout}"}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed; tests only
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Hints queued by in-process tests land on a queue of this checkout's own, which only this
# checkout's test workers consume: a developer's worker on the shared Redis never sees them.
CELERY_TASK_DEFAULT_QUEUE = f"factory-test-{_checkout}"
JOBS_QUEUE = f"factory-test-{_checkout}-jobs"
TELEMETRY_QUEUE = f"factory-test-{_checkout}-telemetry"
WEBHOOK_QUEUE = f"factory-test-{_checkout}-webhooks"
CELERY_TASK_QUEUES, CELERY_TASK_ROUTES = celery_routing(
    CELERY_TASK_DEFAULT_QUEUE, JOBS_QUEUE, TELEMETRY_QUEUE, WEBHOOK_QUEUE
)
# The suite (Schemathesis, end-to-end runs) makes many requests on one token: counted, but never
# refused, unless the environment sets a rate. Rate-limit tests set tiny rates and their own
# RATE_LIMIT_KEY_PREFIX (tests/support/api.py: rate_limits).
RATE_LIMITS = {
    scope: os.environ.get(f"RATE_LIMIT_{scope.upper()}", "1000000/min") for scope in RATE_LIMITS
}
# A scrape reads the test's own rows, never an earlier test's cached ones (the metrics tests
# that are about the cache turn it on).
METRICS_CACHE_SECONDS = float(os.environ.get("METRICS_CACHE_SECONDS", "0"))
