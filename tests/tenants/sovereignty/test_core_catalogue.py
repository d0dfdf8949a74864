"""Each rule kind, allowed and denied, through the Cedar engine and the reference evaluator."""

import pytest

from tenants.sovereignty.core import reference
from tenants.sovereignty.core.cedar import compile_rules, evaluate, validation_errors
from tenants.sovereignty.core.model import (
    Action,
    ArtifactFacts,
    AssetFacts,
    PersonFacts,
    Request,
    Rule,
    RuleKind,
    SiteFacts,
)
from tenants.sovereignty.core.rules import RuleError, describe, validate_params

FRA = SiteFacts(
    "FRA1",
    "gov",
    "DE",
    frozenset({"DE", "EU", "EEA"}),
    air_gapped=True,
    accreditations=frozenset({"vs-nfd"}),
)
PAR = SiteFacts("PAR1", "gov", "FR", frozenset({"FR", "EU", "EEA"}))
IAD = SiteFacts("IAD1", "gov", "US", frozenset({"US"}))
PII = AssetFacts("ds-1", "gov", "dataset", "confidential", frozenset({"pii"}), site="FRA1")
MODEL = AssetFacts("m-1", "gov", "model", "restricted", frozenset(), site="FRA1")
SECRET = AssetFacts("s-1", "gov", "dataset", "secret", frozenset(), site="FRA1")
KEY = AssetFacts("k-1", "gov", "key", "secret", frozenset(), site="FRA1")
HANS = PersonFacts("hans", "DE", "DE", "secret")
JOE = PersonFacts("joe", "US", "US", "none")


def decide(rules, request):
    cedar = evaluate(compile_rules(rules), request)
    ref = reference.evaluate(rules, request)
    assert (cedar.allowed, cedar.rule_ids) == (ref.allowed, ref.rule_ids)
    return cedar


def rule(kind, rule_id="r1", **params):
    return Rule(rule_id, "gov", RuleKind(kind), params)


CASES = [
    # (rule, request, allowed, deciding ids)
    (
        "residency in a group",
        rule("residency", asset_kinds=["dataset"], labels=["pii"], allowed=["EU"]),
        Request(Action.PLACE_ASSET, None, PAR, asset=PII),
        True,
        ("platform.own-premises",),
    ),
    (
        "residency in a group, outside",
        rule("residency", asset_kinds=["dataset"], labels=["pii"], allowed=["EU"]),
        Request(Action.PLACE_ASSET, None, IAD, asset=PII),
        False,
        ("r1",),
    ),
    (
        "residency by country",
        rule("residency", allowed=["DE"]),
        Request(Action.PROCESS_ASSET, None, FRA, asset=MODEL),
        True,
        ("platform.own-premises",),
    ),
    (
        "residency by country, other EU country",
        rule("residency", allowed=["DE"]),
        Request(Action.PROCESS_ASSET, None, PAR, asset=MODEL),
        False,
        ("r1",),
    ),
    (
        "residency ignores assets it does not match",
        rule("residency", min_classification="secret", allowed=["DE"]),
        Request(Action.PLACE_ASSET, None, IAD, asset=PII),
        True,
        ("platform.own-premises",),
    ),
    (
        "co-location: processed where stored",
        rule("colocation", asset_kinds=["dataset"]),
        Request(Action.PROCESS_ASSET, None, FRA, asset=PII),
        True,
        ("platform.own-premises",),
    ),
    (
        "co-location: processed elsewhere",
        rule("colocation", asset_kinds=["dataset"]),
        Request(Action.PROCESS_ASSET, None, PAR, asset=PII),
        False,
        ("r1",),
    ),
    (
        "replica in EU",
        rule("replica_residency", allowed=["EU"]),
        Request(Action.REPLICATE_ASSET, None, PAR, asset=PII),
        True,
        ("platform.own-premises",),
    ),
    (
        "replica in US",
        rule("replica_residency", allowed=["EU"]),
        Request(Action.REPLICATE_ASSET, None, IAD, asset=PII),
        False,
        ("r1",),
    ),
    (
        "transfer with SCCs on record",
        rule("transfer", allowed=["EEA"], legal_bases=["scc"]),
        Request(Action.TRANSFER_ASSET, None, IAD, asset=PII, legal_bases=frozenset({"scc"})),
        True,
        ("platform.own-premises",),
    ),
    (
        "transfer without a legal basis",
        rule("transfer", allowed=["EEA"], legal_bases=["scc"]),
        Request(Action.TRANSFER_ASSET, None, IAD, asset=PII),
        False,
        ("r1",),
    ),
    (
        "secret on an air-gapped accredited site",
        rule(
            "accreditation", min_classification="secret", accreditations=["vs-nfd"], air_gapped=True
        ),
        Request(Action.PLACE_ASSET, None, FRA, asset=SECRET),
        True,
        ("platform.own-premises",),
    ),
    (
        "secret on an ordinary site",
        rule(
            "accreditation", min_classification="secret", accreditations=["vs-nfd"], air_gapped=True
        ),
        Request(Action.PLACE_ASSET, None, PAR, asset=SECRET),
        False,
        ("r1",),
    ),
    (
        "cleared German technician on site",
        rule("personnel", nationalities=["DE"], min_clearance="secret", in_country=True),
        Request(Action.ACCESS_SITE, HANS, FRA, from_country="DE"),
        True,
        ("platform.provider-access",),
    ),
    (
        "uncleared foreign technician",
        rule("personnel", nationalities=["DE"], min_clearance="secret", in_country=True),
        Request(Action.ACCESS_SITE, JOE, FRA, from_country="US"),
        False,
        ("r1",),
    ),
    (
        "remote access to an air-gapped site",
        rule("personnel", nationalities=["DE"]),
        Request(Action.ACCESS_SITE, HANS, FRA, from_country="DE", remote=True),
        False,
        ("r1",),
    ),
    (
        "approved access",
        rule("customer_approval"),
        Request(Action.ACCESS_SITE, HANS, FRA, from_country="DE", approved=True),
        True,
        ("platform.provider-access",),
    ),
    (
        "unapproved access",
        rule("customer_approval"),
        Request(Action.ACCESS_SITE, HANS, FRA, from_country="DE"),
        False,
        ("r1",),
    ),
    (
        "power telemetry to the EU",
        rule("telemetry_egress", categories=["power"], destinations=["EU"]),
        Request(Action.EGRESS_TELEMETRY, None, FRA, telemetry_category="power", destination=PAR),
        True,
        ("platform.telemetry",),
    ),
    (
        "logs telemetry to the US",
        rule("telemetry_egress", categories=["power"], destinations=["EU"]),
        Request(Action.EGRESS_TELEMETRY, None, FRA, telemetry_category="logs", destination=IAD),
        False,
        ("r1",),
    ),
    (
        "signed firmware from an allowlisted origin",
        rule("artifact_provenance", origins=["aws-neuron"], require_signature=True),
        Request(
            Action.ACCEPT_ARTIFACT, None, FRA, artifact=ArtifactFacts("fw", "aws-neuron", True)
        ),
        True,
        ("platform.artifacts",),
    ),
    (
        "unsigned firmware",
        rule("artifact_provenance", origins=["aws-neuron"], require_signature=True),
        Request(
            Action.ACCEPT_ARTIFACT, None, FRA, artifact=ArtifactFacts("fw", "aws-neuron", False)
        ),
        False,
        ("r1",),
    ),
    (
        "key in an in-country customer key store",
        rule("key_custody", in_country=True, customer_controlled=True),
        Request(
            Action.PLACE_ASSET,
            None,
            FRA,
            asset=KEY,
            key_store_country="DE",
            key_store_customer_controlled=True,
        ),
        True,
        ("platform.own-premises",),
    ),
    (
        "key in a provider key store abroad",
        rule("key_custody", in_country=True, customer_controlled=True),
        Request(Action.PLACE_ASSET, None, FRA, asset=KEY, key_store_country="US"),
        False,
        ("r1",),
    ),
]


@pytest.mark.parametrize(
    ("title", "the_rule", "request_", "allowed", "ids"), CASES, ids=[c[0] for c in CASES]
)
def test_rule_catalogue(title, the_rule, request_, allowed, ids):
    assert validation_errors([the_rule]) == []
    decision = decide([the_rule], request_)
    assert decision.allowed is allowed
    assert decision.rule_ids == ids
    assert len(decision.reasons) == len(ids) and all(decision.reasons)


def test_forbid_wins_over_permit_and_names_every_forbidding_rule():
    rules = [
        rule("residency", "r1", allowed=["EU"]),
        rule("replica_residency", "r2", allowed=["DE"]),
        rule("residency", "r3", labels=["pii"], allowed=["DE"]),
    ]
    decision = decide(rules, Request(Action.PLACE_ASSET, None, IAD, asset=PII))
    assert not decision.allowed and decision.rule_ids == ("r1", "r3")
    assert decision.reasons[0] == "Assets may only be stored or processed in EU"


def test_default_deny_across_tenants():
    other = AssetFacts("x", "someone-else", "dataset", "public")
    decision = decide([], Request(Action.PLACE_ASSET, None, FRA, asset=other))
    assert not decision.allowed and decision.rule_ids == ()
    assert "default deny" in decision.reasons[0]


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (
            Request(Action.PLACE_ASSET, None, SiteFacts("X", "gov", "", frozenset()), asset=PII),
            "has no country",
        ),
        (
            Request(Action.ACCESS_SITE, PersonFacts("p", "DE", "DE", ""), FRA, from_country="DE"),
            "no valid clearance",
        ),
        (Request(Action.ACCESS_SITE, PersonFacts("p", "", "DE", "secret"), FRA), "no nationality"),
        (
            Request(Action.PLACE_ASSET, None, FRA, asset=AssetFacts("a", "gov", "dataset", "top")),
            "no valid classification",
        ),
        (Request(Action.ACCESS_SITE, None, FRA), "no person"),
    ],
)
def test_missing_facts_fail_closed(request_, why):
    decision = evaluate(compile_rules([]), request_)  # even with no customer rule at all
    assert not decision.allowed and decision.errors
    assert why in decision.reasons[0]


def test_malformed_entity_fails_closed():
    broken = SiteFacts("FRA1", "gov", "DE", frozenset({1, 2}))  # not strings: schema violation
    decision = evaluate(compile_rules([]), Request(Action.ACCESS_SITE, HANS, broken))
    assert not decision.allowed and decision.errors


def test_an_erroring_forbid_is_a_deny_not_a_skip():
    """Cedar skips a policy that errors; for a forbid that would fail open. Ours denies."""
    import cedarpy

    from tenants.sovereignty.core.cedar import CompiledPolicies

    compiled = compile_rules([rule("customer_approval")])
    text = compiled.text + (
        '\n@id("bad")\nforbid(principal, action, resource) when { resource.no_such == 1 };'
    )
    broken = CompiledPolicies(
        text, cedarpy.PolicySet.from_str(text), (*compiled.deciders, ("bad", "a bad policy"))
    )
    decision = evaluate(broken, Request(Action.ACCESS_SITE, HANS, FRA, approved=True))
    assert not decision.allowed and decision.errors


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("residency", {}, "params.allowed"),
        ("residency", {"allowed": ["EU"], "asset_kinds": ["weights"]}, "params.asset_kinds"),
        ("residency", {"allowed": ['EU"] || true']}, "params.allowed"),  # no Cedar injection
        ("personnel", {}, "params"),
        ("personnel", {"min_clearance": "ultra"}, "params.min_clearance"),
        ("artifact_provenance", {"origins": []}, "params.origins"),
        ("transfer", {"allowed": ["EU"], "legal_bases": ["handshake"]}, "params.legal_bases"),
        ("telemetry", {}, "kind"),
        ("residency", {"allowed": ["EU"], "colour": "red"}, "params.colour"),
    ],
)
def test_invalid_rules_name_the_parameter(kind, params, field):
    with pytest.raises(RuleError) as error:
        validate_params(kind, params)
    assert error.value.field == field


def test_descriptions_read_as_sentences():
    assert describe(
        "residency",
        validate_params(
            "residency",
            {
                "asset_kinds": ["dataset"],
                "min_classification": "confidential",
                "labels": ["pii"],
                "allowed": ["EU", "CH"],
            },
        ),
    ) == (
        "Dataset assets classified confidential or above labelled pii may only be stored or "
        "processed in CH, EU"
    )


def test_pure_core_imports_no_django():
    from pathlib import Path

    from tests.support.purity import imported_modules

    for path in Path("tenants/sovereignty/core").glob("*.py"):
        roots = {m.split(".")[0] for m in imported_modules(str(path))}
        assert not roots & {"django", "rest_framework", "factory", "provisioning"}, path
