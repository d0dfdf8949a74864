"""The client's address behind the front (ClientAddressMiddleware): with TRUSTED_PROXY_COUNT
it comes from X-Forwarded-For, so log-in lockouts and rate limits are per client, not one for
everyone behind nginx; without it a client's X-Forwarded-For changes nothing."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from factory.core.middleware import ClientAddressMiddleware
from tenants.services.logins import client_address

pytestmark = pytest.mark.django_db


def address(xff: str | None, peer: str = "10.0.0.2") -> tuple[str, object]:
    extra = {"REMOTE_ADDR": peer}
    if xff is not None:
        extra["HTTP_X_FORWARDED_FOR"] = xff
    request = RequestFactory().get("/", **extra)
    ClientAddressMiddleware(lambda r: None)(request)
    return request.META["REMOTE_ADDR"], request.META.get("HTTP_X_FORWARDED_FOR")


def test_behind_one_proxy_the_client_is_the_last_forwarded_hop(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    assert address("203.0.113.7") == ("203.0.113.7", None)
    assert address("198.51.100.1, 203.0.113.7") == ("203.0.113.7", None)  # a forged first hop
    assert address(None) == ("10.0.0.2", None)  # inside callers (the site agent): as they are


def test_without_a_proxy_a_forwarded_header_is_ignored(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    assert address("203.0.113.7") == ("10.0.0.2", None)


def test_log_in_lockouts_key_on_the_client_behind_the_front(client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    seen = []
    for who in ("203.0.113.7", "203.0.113.8"):
        request = RequestFactory().post("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=who)
        ClientAddressMiddleware(lambda r: None)(request)
        seen.append(client_address(request))
    assert seen == ["203.0.113.7", "203.0.113.8"]
