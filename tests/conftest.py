import pytest

from tests.support.fleet import build_fleet


@pytest.fixture
def fleet(db):
    return build_fleet()


@pytest.fixture(scope="session", autouse=True)
def _drop_unconsumed_hints():
    """In-process transactional tests queue workflow hints on this checkout's own queue, which
    no worker consumes; remove them from the shared Redis afterwards."""
    yield
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(settings.CELERY_TASK_DEFAULT_QUEUE, settings.WEBHOOK_QUEUE)
    client.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A transactional test must use ``serialized_rollback``: without it the flush after it
    re-creates content types and permissions, and the next test that does restore from the
    serialized copy fails at setup on a duplicate key (that broke 27 tests in CI once)."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if (
            marker
            and marker.kwargs.get("transaction")
            and not marker.kwargs.get("serialized_rollback")
        ):
            raise pytest.UsageError(
                f"{item.nodeid}: django_db(transaction=True) needs serialized_rollback=True"
            )
