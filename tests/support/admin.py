"""Admin test helpers: the data a change form would post back, read from its GET response."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse


def _wire(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    if isinstance(value, bool):
        return "on" if value else ""
    return value


def admin_form_data(response: HttpResponse) -> dict[str, Any]:
    """The POST data of the admin add/change form in ``response`` (a test client GET), inline
    formsets and their management forms included, as a browser would send it unchanged."""
    context = response.context  # type: ignore[attr-defined]
    data: dict[str, Any] = {}
    form = context["adminform"].form
    for name in form.fields:
        value = _wire(form[name].value())
        if value != "":
            data[form.add_prefix(name)] = value
    for inline in context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = _wire(management[name].value())
        for subform in formset.forms:
            for name in subform.fields:
                value = _wire(subform[name].value())
                if value != "":
                    data[subform.add_prefix(name)] = value
    return data
