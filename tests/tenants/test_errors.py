"""The domain errors: one class per status, each carrying a code, a message and its reasons;
the existing refusals are these classes; Django's own refusals read as them."""

from __future__ import annotations

import pytest
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db import DataError, IntegrityError
from django.http import Http404

from tenants.django_errors import REFUSALS, add_to_form, as_domain_error
from tenants.errors import (
    Conflict,
    Denied,
    DomainError,
    FieldError,
    Invalid,
    NotFound,
    PreconditionFailed,
)
from tests.support.purity import imported_modules


@pytest.mark.parametrize(
    ("cls", "status", "code"),
    [
        (Invalid, 400, "invalid"),
        (Denied, 403, "permission_denied"),
        (NotFound, 404, "not_found"),
        (Conflict, 409, "conflict"),
        (PreconditionFailed, 412, "precondition_failed"),
    ],
)
def test_each_class_is_one_status_with_a_default_code_and_reason(cls, status, code):
    bare = cls()
    assert isinstance(bare, DomainError) and bare.status == status and bare.code == code
    assert bare.as_dict() == {
        "status": status,
        "code": code,
        "message": cls.default_message,
        "errors": [{"field": None, "code": code, "message": cls.default_message}],
    }
    one = cls("rack R01 is full", code="rack_full", field="rack")
    assert (one.message, one.code, one.field, str(one)) == (
        "rack R01 is full",
        "rack_full",
        "rack",
        "rack R01 is full",
    )
    assert one.errors == (FieldError("rack", "rack_full", "rack R01 is full"),)


def test_several_reasons_and_their_sentences():
    error = Invalid(
        errors=[FieldError("rack", "full", "no room"), FieldError(None, "late", "too late")]
    )
    assert error.message == "no room" and error.code == "invalid"
    assert error.sentences() == ["rack: no room", "too late"]
    assert [e["field"] for e in error.as_dict()["errors"]] == ["rack", None]


def test_the_module_is_pure_so_every_layer_and_core_may_raise_them():
    assert imported_modules("tenants/errors.py") <= {
        "__future__",
        "collections.abc",
        "dataclasses",
        "typing",
    }


def test_the_existing_refusals_are_domain_errors():
    from factory.inventory.lifecycle import InvalidTransition
    from factory.telemetry.ingest import BatchRejected, ForeignSource
    from tenants.models.audit import AppendOnlyError
    from tenants.sovereignty.core.model import Decision
    from tenants.sovereignty.services import RuleRejected, SovereigntyDenied

    moved = InvalidTransition("S1", "planned", "in-service")
    assert isinstance(moved, Conflict)
    assert (moved.code, moved.field) == ("invalid_transition", "lifecycle_state")
    assert "'planned' → 'in-service' is not allowed" in moved.message
    denied = SovereigntyDenied(Decision(False, ("r1", "r2"), ("not in DE", "not signed")))
    assert isinstance(denied, Denied) and denied.code == "sovereignty_denied"
    assert [e.message for e in denied.errors] == ["r1: not in DE", "r2: not signed"]
    assert str(denied) == "not in DE; not signed"
    closed = SovereigntyDenied(Decision(False, (), ("no country on record",)))
    assert [e.message for e in closed.errors] == ["no country on record"]
    rejected = RuleRejected("status", "not_a_draft", "rule is active, not a draft")
    assert isinstance(rejected, Invalid) and (rejected.field, rejected.code) == (
        "status",
        "not_a_draft",
    )
    batch = BatchRejected("reports[3].Oem", "invalid", "bad")
    assert isinstance(batch, Invalid) and batch.field == "reports[3].Oem"
    assert isinstance(ForeignSource("elsewhere"), Denied)
    assert ForeignSource("elsewhere").code == "other_site"
    assert isinstance(AppendOnlyError("audit events cannot be deleted"), Denied)


def test_djangos_refusals_read_as_domain_errors():
    invalid = as_domain_error(
        ValidationError(
            {
                "rack": ValidationError(
                    "no room at U%(u)s", code="position_taken", params={"u": 7}
                ),
                "__all__": ValidationError("rack and position are set together"),
            }
        )
    )
    assert isinstance(invalid, Invalid) and invalid.code == "invalid"
    assert [e.as_dict() for e in invalid.errors] == [
        {"field": "rack", "code": "position_taken", "message": "no room at U7"},
        {"field": None, "code": "invalid", "message": "rack and position are set together"},
    ]
    assert as_domain_error(ValidationError(["a", "b"])).sentences() == ["a", "b"]
    assert isinstance(as_domain_error(PermissionDenied("Only admins.")), Denied)
    assert as_domain_error(PermissionDenied("Only admins.")).message == "Only admins."
    assert as_domain_error(PermissionDenied()).message == Denied.default_message
    # Missing says nothing more than that (another tenant's object is "missing" too).
    assert as_domain_error(Http404("No Site matches the given query.")).message == "Not found."
    assert isinstance(as_domain_error(ObjectDoesNotExist()), NotFound)
    assert as_domain_error(IntegrityError("duplicate key")).code == "integrity_conflict"
    assert as_domain_error(DataError("out of range")).code == "invalid_value"
    same = Conflict("x")
    assert as_domain_error(same) is same
    assert as_domain_error(RuntimeError("a bug")) is None  # a bug stays a 500
    assert all(issubclass(cls, Exception) for cls in REFUSALS)


def test_reasons_land_on_the_fields_a_form_shows():
    from django import forms

    class RackForm(forms.Form):
        rack = forms.CharField()

    form = RackForm({"rack": "R01"})
    assert form.is_valid()
    add_to_form(
        form,
        Invalid(
            errors=[
                FieldError("rack", "rack_full", "no room"),
                FieldError("site", "closed", "site closed"),
                FieldError(None, "late", "too late"),
            ]
        ),
    )
    assert not form.is_valid()
    assert form.errors["rack"] == ["no room"]
    assert form.non_field_errors() == ["site: site closed", "too late"]
