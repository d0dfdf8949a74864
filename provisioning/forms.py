"""Django forms generated from declared parameters (``provisioning.workflows.params``), for the
admin's and the console's start-upgrade pages. A form only turns text into values; whether the
values are allowed is decided by ``services`` (the one place), whose errors come back onto the
fields they name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from django import forms

from provisioning.workflows.params import Param, ParamSet, Value
from tenants.django_errors import refuse_on_form


def _number_attrs(param: Param) -> dict[str, Any]:
    """The bounds as HTML hints for the browser (not checks: the service checks)."""
    return {
        key: bound
        for key, bound in (("min", param.minimum), ("max", param.maximum))
        if bound is not None
    }


def param_field(param: Param) -> forms.Field:
    """A form field for ``param``: its label, help and default; never required and without
    validators of its own."""
    common: dict[str, Any] = {
        "label": param.title,
        "help_text": param.help,
        "required": False,
        "initial": param.default,
    }
    if param.type is bool:
        return forms.BooleanField(**common)
    if param.type is int:
        return forms.IntegerField(widget=forms.NumberInput(_number_attrs(param)), **common)
    if param.type is float:
        attrs = {"step": "any", **_number_attrs(param)}
        return forms.FloatField(widget=forms.NumberInput(attrs), **common)
    if param.type is str:
        attrs = {"maxlength": int(param.maximum)} if param.maximum is not None else {}
        return forms.CharField(widget=forms.TextInput(attrs), **common)
    raise TypeError(f"{param.name}: a {param.type.__name__} parameter has no form field")


class SpecForm(forms.Form):
    """A form with a field for each of ``params`` that ``spec_names`` names (default: those
    offered in forms), after any the subclass declares."""

    params: ClassVar[ParamSet] = ParamSet()
    spec_names: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self.spec_fields():
            self.fields[name] = param_field(self.params[name])

    @classmethod
    def spec_fields(cls) -> tuple[str, ...]:
        if cls.spec_names is not None:
            return cls.spec_names
        return tuple(p.name for p in cls.params if p.in_forms)

    def spec(self) -> dict[str, Value]:
        """The values entered (after ``is_valid()``); empty fields are left out, so the service
        fills in their defaults."""
        return {
            name: self.cleaned_data[name]
            for name in self.spec_fields()
            if self.cleaned_data.get(name) not in (None, "")
        }

    def refused(self, exc: Exception, renamed: Mapping[str, str] | None = None) -> None:
        """Show a service's refusal (any of ``tenants.django_errors.REFUSALS``: a domain error
        or Django's ``ValidationError``, ...): ``spec.batch_size`` on the field ``batch_size``, a
        name in ``renamed`` (e.g. ``targets`` → ``ultraservers``) on that field, the rest on the
        form (prefixed with the name they carry)."""
        spec = {f"spec.{name}": name for name in self.fields}
        refuse_on_form(self, exc, {**spec, **(renamed or {})})
