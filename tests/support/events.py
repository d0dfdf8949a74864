"""Events in tests."""

from django.db import connection


def commit_events() -> None:
    """Fire the deferred trigger that numbers events (it runs at COMMIT, which a plain
    ``django_db`` test never reaches)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
