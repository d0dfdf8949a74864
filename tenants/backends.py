"""The authentication backend: Django's model backend, with failed log-ins counted and a
locked-out username refused (``tenants.services.logins``). Every password check goes through
it: the API's token log-in, the console's and the admin's log-in forms."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from tenants.services import logins


class LockoutModelBackend(ModelBackend):
    @sensitive_variables("password")
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ):
        if request is None or username is None or password is None:
            # No client to count against (a management command, a test client's login()).
            return super().authenticate(request, username, password, **kwargs)
        address = logins.client_address(request)
        if logins.locked_for(username, address):
            raise PermissionDenied("too many failed log-ins")  # stops authenticate() here
        user = super().authenticate(request, username, password, **kwargs)
        if user is None:
            logins.record_failure(username, address)
        else:
            logins.clear(username, address)
        return user
