"""Rules that cannot be mistyped: every place a rule names is an ISO 3166-1 alpha-2 code or a
group the tenant knows (built-in or its own); groups expand to countries before a decision."""

import pytest

from tenants.sovereignty.core.rules import (
    UNRESOLVED,
    Places,
    RuleError,
    UnknownPlace,
    expand_places,
    validate_params,
)
from tests.support.sovereignty import RULES

PLACES = Places(countries={"DE", "FR", "US", "NO"}, groups={"EU", "DACH"})


@pytest.mark.parametrize(
    ("kind", "params", "field", "value"),
    [
        ("residency", {"allowed": ["XX"]}, "params.allowed", "XX"),
        ("residency", {"allowed": ["DE", "Germany"]}, "params.allowed", "Germany"),
        ("replica_residency", {"allowed": ["eu"]}, "params.allowed", "eu"),
        ("transfer", {"allowed": ["FIVE-EYES"]}, "params.allowed", "FIVE-EYES"),
        ("personnel", {"nationalities": ["DE", "ZZ"]}, "params.nationalities", "ZZ"),
        ("personnel", {"residencies": ["Europe"]}, "params.residencies", "Europe"),
        ("telemetry_egress", {"destinations": ["XX"]}, "params.destinations", "XX"),
    ],
)
def test_unknown_places_are_refused_naming_the_field_and_value(kind, params, field, value):
    with pytest.raises(UnknownPlace) as refused:
        validate_params(kind, params, PLACES)
    assert refused.value.field == field and refused.value.value == value
    assert repr(value) in refused.value.message
    validate_params(kind, params)  # without places given, the pure check is syntax only


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("residency", {"allowed": ["DE", "EU"]}),
        ("transfer", {"allowed": ["DACH"], "legal_bases": ["scc"]}),
        ("personnel", {"nationalities": ["EU"], "residencies": ["NO"]}),
        ("telemetry_egress", {"destinations": ["EU"]}),
        ("artifact_provenance", {"origins": ["XX"]}),  # origins are not places
    ],
)
def test_countries_and_known_groups_are_accepted(kind, params):
    validate_params(kind, params, PLACES)


def test_groups_expand_to_their_countries_and_unknown_ones_admit_nothing():
    groups = {"EU": ["DE", "FR"], "DACH": ["AT", "CH", "DE"]}
    out = expand_places(
        "personnel",
        {"nationalities": ["EU", "US"], "residencies": ["DACH", "GONE"], "min_clearance": "none"},
        PLACES.countries,
        groups,
    )
    assert out["nationalities"] == ["DE", "FR", "US"]
    assert out["residencies"] == ["AT", "CH", "DE", f"{UNRESOLVED}GONE"]
    assert out["min_clearance"] == "none"
    validate_params("personnel", out)  # still a well-formed rule for the engine
    assert expand_places("colocation", {"labels": ["EU"]}, PLACES.countries, groups) == {
        "labels": ["EU"]
    }


def test_a_place_error_is_a_rule_error():
    assert issubclass(UnknownPlace, RuleError)


def post_rule(client, tenant, kind, **params):
    return client.post(
        RULES, {"tenant": tenant.pk, "name": kind, "kind": kind, "params": params}, format="json"
    )


@pytest.mark.parametrize(
    ("kind", "params", "field", "value"),
    [
        ("residency", {"allowed": ["XX"]}, "params.allowed", "XX"),
        ("residency", {"allowed": ["Germany"]}, "params.allowed", "Germany"),
        ("transfer", {"allowed": ["EU", "XX"]}, "params.allowed", "XX"),
        ("personnel", {"nationalities": ["XX"]}, "params.nationalities", "XX"),
        ("personnel", {"residencies": ["XX"]}, "params.residencies", "XX"),
        ("telemetry_egress", {"destinations": ["XX"]}, "params.destinations", "XX"),
    ],
)
def test_the_api_refuses_unknown_places(fleet, kind, params, field, value):
    refused = post_rule(fleet.client("alpha_admin"), fleet.alpha, kind, **params)
    assert refused.status_code == 400, refused.content
    (error,) = refused.json()["errors"]
    assert (error["field"], error["code"]) == (field, "unknown_place")
    assert repr(value) in error["message"]


def test_a_tenant_names_its_own_groups_not_another_tenants(fleet):
    beta = fleet.client("beta_admin")
    made = beta.post(
        "/api/v1/sovereignty/groups/",
        {"tenant": fleet.beta.pk, "code": "BENELUX", "name": "Benelux", "countries": ["BE", "NL"]},
        format="json",
    )
    assert made.status_code == 201, made.content
    assert post_rule(beta, fleet.beta, "residency", allowed=["BENELUX"]).status_code == 201
    refused = post_rule(fleet.client("alpha_admin"), fleet.alpha, "residency", allowed=["BENELUX"])
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["field"] == "params.allowed"
    assert (
        post_rule(
            fleet.client("alpha_admin"), fleet.alpha, "residency", allowed=["EEA"]
        ).status_code
        == 201
    )


def test_a_tenant_group_may_not_take_a_builtin_code(fleet):
    refused = fleet.client("alpha_admin").post(
        "/api/v1/sovereignty/groups/",
        {"tenant": fleet.alpha.pk, "code": "EU", "name": "mine", "countries": ["DE"]},
        format="json",
    )
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["field"] == "code"
