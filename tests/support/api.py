"""API test helpers: the error shape every 4xx must have, a client with a site agent's token,
tiny rate limits."""

import uuid

from rest_framework.test import APIClient

from factory import wire


def assert_error_body(response, status: int):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["errors"], list) and body["errors"]
    for error in body["errors"]:
        assert set(error) == {"field", "code", "message"}
    return body


def rate_limits(settings, **rates: str) -> str:
    """Set these ``RATE_LIMITS`` (e.g. ``token="3/hour"``) through pytest-django's ``settings``,
    counted under a key prefix of this test's own (the shared Redis outlives test runs, whose
    ids repeat). Returns the prefix."""
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, **rates}
    settings.RATE_LIMIT_KEY_PREFIX = prefix = f"ratelimit-test-{uuid.uuid4().hex}"
    return prefix


def gateway(path: str, **params) -> str:
    """An agent gateway path (``factory.wire``) as a test client takes it: ``/api/v1/agent/...``."""
    return f"{wire.API_ROOT}{path.format(**params)}"


def agent_token_client(clear: str) -> APIClient:
    """A client that authenticates as the site agent whose clear token is ``clear``."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=wire.authorization(clear))
    return client
