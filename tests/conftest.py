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
