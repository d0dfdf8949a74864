"""The log-in forms: one lockout check for every password form (the console's and the admin's).

While a username is locked out from the client's address (too many failed log-ins,
``tenants.services.logins``) the form says so, with the wait, instead of checking the password:
the authentication backend would refuse it anyway, and Django would then show only its
"wrong username or password"."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from tenants.services import logins


class LockoutAuthenticationForm(AuthenticationForm):
    """Django's log-in form, saying so while the username is locked out from this address."""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if username and self.request is not None:
            wait = logins.locked_for(username, logins.client_address(self.request))
            if wait:
                raise ValidationError(logins.lockout_message(wait), code="locked_out")
        return super().clean()


class AdminLoginForm(LockoutAuthenticationForm, AdminAuthenticationForm):
    """The admin's log-in form (staff only, its own wording), with the lockout message."""
