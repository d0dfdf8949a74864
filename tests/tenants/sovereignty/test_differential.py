"""Differential test: the Cedar engine and the reference evaluator, over random rules and facts,
reach the same decision for the same determining rules."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenants.sovereignty.core import reference
from tenants.sovereignty.core.cedar import compile_rules, evaluate
from tenants.sovereignty.core.model import (
    ASSET_KINDS,
    CLASSIFICATIONS,
    CLEARANCES,
    LEGAL_BASES,
    Action,
    ArtifactFacts,
    AssetFacts,
    PersonFacts,
    Request,
    Rule,
    RuleKind,
    SiteFacts,
)

COUNTRIES = ["DE", "FR", "US", "CH", "GB"]
GROUPS = {
    "DE": {"EU", "EEA"},
    "FR": {"EU", "EEA"},
    "US": {"FIVE-EYES"},
    "GB": {"FIVE-EYES"},
    "CH": set(),
}
PLACES = [*COUNTRIES, "EU", "EEA", "FIVE-EYES"]
LABELS = ["pii", "health", "export-controlled"]
ACCREDITATIONS = ["vs-nfd", "bsi-c5", "fedramp-high"]
ORIGINS = ["aws-neuron", "nvidia", "provider-ci"]
TRUST_ROOTS = ["provider:release", "tenant:own", "tenant:other"]
CATEGORIES = ["power", "thermal", "utilization", "logs"]
KEY_STORES = ["xks-fra", "xks-par"]
TENANTS = ["t1", "t2"]


def subset(values):
    return st.lists(st.sampled_from(values), unique=True, max_size=len(values))


def nonempty(values):
    return st.lists(st.sampled_from(values), unique=True, min_size=1, max_size=len(values))


@st.composite
def sites(draw, key=None):
    country = draw(st.sampled_from(COUNTRIES))
    return SiteFacts(
        key or draw(st.sampled_from(["S1", "S2", "S3"])),
        draw(st.sampled_from(TENANTS)),
        country,
        frozenset({country} | GROUPS[country]),
        draw(st.booleans()),
        frozenset(draw(subset(ACCREDITATIONS))),
    )


assets = st.builds(
    AssetFacts,
    id=st.just("A1"),
    tenant=st.sampled_from(TENANTS),
    kind=st.sampled_from(ASSET_KINDS),
    classification=st.sampled_from(CLASSIFICATIONS),
    labels=subset(LABELS).map(frozenset),
    site=st.sampled_from([None, "S1", "S2", "S3"]),
)
people = st.builds(
    PersonFacts,
    id=st.just("P1"),
    nationality=st.sampled_from(COUNTRIES),
    residency=st.sampled_from(COUNTRIES),
    clearance=st.sampled_from(CLEARANCES),
)
match = {
    "asset_kinds": subset(ASSET_KINDS),
    "min_classification": st.sampled_from(CLASSIFICATIONS),
    "labels": subset(LABELS),
}
PARAMS = {
    RuleKind.RESIDENCY: st.fixed_dictionaries({**match, "allowed": nonempty(PLACES)}),
    RuleKind.COLOCATION: st.fixed_dictionaries(match),
    RuleKind.REPLICA_RESIDENCY: st.fixed_dictionaries({**match, "allowed": nonempty(PLACES)}),
    RuleKind.TRANSFER: st.fixed_dictionaries(
        {**match, "allowed": nonempty(PLACES), "legal_bases": subset(LEGAL_BASES)}
    ),
    RuleKind.ACCREDITATION: st.fixed_dictionaries(
        {
            "min_classification": st.sampled_from(CLASSIFICATIONS),
            "accreditations": nonempty(ACCREDITATIONS),
            "air_gapped": st.booleans(),
        }
    ),
    RuleKind.PERSONNEL: st.fixed_dictionaries(
        {
            "nationalities": nonempty(COUNTRIES),
            "residencies": subset(COUNTRIES),
            "min_clearance": st.sampled_from(CLEARANCES),
            "in_country": st.booleans(),
        }
    ),
    RuleKind.CUSTOMER_APPROVAL: st.just({}),
    RuleKind.TELEMETRY_EGRESS: st.fixed_dictionaries(
        {"categories": nonempty(CATEGORIES), "destinations": subset(PLACES)}
    ),
    RuleKind.ARTIFACT_PROVENANCE: st.fixed_dictionaries(
        {
            "origins": nonempty(ORIGINS),
            "require_signature": st.booleans(),
            "trust_roots": subset(TRUST_ROOTS),
        }
    ),
    RuleKind.KEY_CUSTODY: st.fixed_dictionaries(
        {
            "in_country": st.booleans(),
            "customer_controlled": st.booleans(),
            "stores": subset(KEY_STORES),
        }
    ),
}


@st.composite
def rule_sets(draw):
    kinds = draw(st.lists(st.sampled_from(list(RuleKind)), max_size=6))
    return [Rule(f"r{i}", "t1", kind, draw(PARAMS[kind])) for i, kind in enumerate(kinds)]


@st.composite
def requests(draw):
    return Request(
        action=draw(st.sampled_from(list(Action))),
        principal=draw(people),
        site=draw(sites()),
        asset=draw(assets),
        artifact=draw(
            st.builds(
                ArtifactFacts,
                id=st.just("F1"),
                origin=st.sampled_from(ORIGINS),
                signature_valid=st.booleans(),
                roots=st.frozensets(st.sampled_from(TRUST_ROOTS)),
            )
        ),
        legal_bases=frozenset(draw(subset(list(LEGAL_BASES)))),
        from_country=draw(st.sampled_from(COUNTRIES)),
        remote=draw(st.booleans()),
        approved=draw(st.booleans()),
        telemetry_category=draw(st.sampled_from(CATEGORIES)),
        destination=draw(sites(key="D1")),
        key_store_country=draw(st.sampled_from(COUNTRIES)),
        key_store_customer_controlled=draw(st.booleans()),
        key_stores=frozenset(draw(subset(KEY_STORES))),
        key_stores_disconnected=frozenset(draw(subset(KEY_STORES))),
    )


CHECKED = []


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=rule_sets(), request=requests())
def test_cedar_engine_agrees_with_reference_evaluator(rules, request):
    cedar = evaluate(compile_rules(rules), request)
    ref = reference.evaluate(rules, request)
    assert not cedar.errors, cedar.errors
    assert (cedar.allowed, cedar.rule_ids) == (ref.allowed, ref.rule_ids)
    CHECKED.append(cedar.allowed)


def test_differential_run_covered_both_outcomes():
    """Runs after the property test: it saw at least 1,000 cases, allows and denies."""
    assert len(CHECKED) >= 1000
    assert any(CHECKED) and not all(CHECKED)
