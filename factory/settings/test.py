"""Test settings: real PostgreSQL and Redis (defaults: the ones on this machine)."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/factory")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")

from factory.settings.base import *  # noqa: F403
from factory.settings.base import DATABASES

DATABASES["default"]["CONN_MAX_AGE"] = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed; tests only
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
