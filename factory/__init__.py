"""The AI factory control plane: Django project and the physical plant."""

from factory.celery import app as celery_app

__all__ = ["celery_app"]
