"""The pure core of root pinning: a provenance rule that trusts "any root" is compiled against
the roots it pinned, an empty pin admits no signature, and other rules are untouched. No
database: the engine decides from what it is given."""

from __future__ import annotations

from tenants.sovereignty.core import cedar, reference
from tenants.sovereignty.core.model import (
    OWN_ROOTS,
    Action,
    ArtifactFacts,
    Request,
    Rule,
    RuleKind,
    SiteFacts,
)
from tenants.sovereignty.core.rules import pin_roots, pins_roots, validate_params

KIND = RuleKind.ARTIFACT_PROVENANCE
ANY_ROOT = validate_params(KIND, {"origins": ["vendor"], "require_signature": True})


def allowed(params: dict, roots: frozenset[str], signed: bool = True) -> bool:
    rule = Rule("rule-1", "1", KIND, params, "")
    compiled = cedar.compile_rules([rule])
    site = SiteFacts("s1", "1", "DE", frozenset({"DE", "EU"}))
    artifact = ArtifactFacts("fw", "vendor", signed, roots)
    request = Request(Action.ACCEPT_ARTIFACT, None, site, artifact=artifact)
    decision = cedar.evaluate(compiled, request)
    assert decision.allowed == reference.evaluate([rule], request).allowed  # the two agree
    return decision.allowed


def test_only_a_rule_that_trusts_any_root_pins():
    assert pins_roots(KIND, ANY_ROOT)
    assert not pins_roots(KIND, {**ANY_ROOT, "require_signature": False})
    assert not pins_roots(KIND, {**ANY_ROOT, "trust_roots": ["provider:a"]})
    named = {**ANY_ROOT, "trust_roots": ["provider:a"]}
    assert pin_roots(KIND, named, ["provider:b"]) is named


def test_a_pinned_rule_takes_the_pinned_roots_and_the_tenants_own_only():
    pinned = pin_roots(KIND, ANY_ROOT, ["provider:old", OWN_ROOTS])
    assert allowed(pinned, frozenset({"provider:old"}))
    assert allowed(pinned, frozenset({"tenant:mine", OWN_ROOTS}))
    assert not allowed(pinned, frozenset({"provider:new"}))  # registered after activation
    assert allowed(ANY_ROOT, frozenset({"provider:new"}))  # what it would be unpinned


def test_an_empty_pin_admits_no_signature():
    pinned = pin_roots(KIND, ANY_ROOT, [])
    assert pinned["trust_roots"] and not allowed(pinned, frozenset({"provider:any"}))
