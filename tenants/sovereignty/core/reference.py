"""A plain-Python evaluator of the same structured rules, written from their meaning rather than
from the Cedar text, so the differential test can catch a compiler that says something else."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from tenants.sovereignty.core.cedar import ASSET_ACTIONS, missing_facts
from tenants.sovereignty.core.model import (
    CLASSIFICATIONS,
    CLEARANCES,
    Action,
    AssetFacts,
    Decision,
    Request,
    Rule,
    RuleKind,
    SiteFacts,
    rank,
)
from tenants.sovereignty.core.rules import validate_params

T = TypeVar("T")


def _present(fact: T | None, what: str) -> T:
    """A fact the action needs: ``evaluate`` has already denied a request without it."""
    assert fact is not None, f"missing_facts: no {what}"
    return fact


def _matches(p: dict[str, Any], asset: AssetFacts) -> bool:
    if p.get("asset_kinds") and asset.kind not in p["asset_kinds"]:
        return False
    if rank(CLASSIFICATIONS, asset.classification) < rank(
        CLASSIFICATIONS, p.get("min_classification", "public")
    ):
        return False
    return not p.get("labels") or bool(set(p["labels"]) & asset.labels)


def _within(site: SiteFacts, allowed: Iterable[str]) -> bool:
    return bool(site.jurisdictions & set(allowed))


def forbids(rule: Rule, r: Request) -> bool:
    p = validate_params(rule.kind, rule.params)
    kind = RuleKind(rule.kind)
    site = r.site
    if kind == RuleKind.RESIDENCY:
        return (
            r.action in (Action.PLACE_ASSET, Action.PROCESS_ASSET)
            and _matches(p, _present(r.asset, "asset"))
            and not _within(site, p["allowed"])
        )
    if kind == RuleKind.COLOCATION:
        if r.action != Action.PROCESS_ASSET:
            return False
        a = _present(r.asset, "asset")
        return _matches(p, a) and (a.site or "") != site.id
    if kind == RuleKind.REPLICA_RESIDENCY:
        return (
            r.action == Action.REPLICATE_ASSET
            and _matches(p, _present(r.asset, "asset"))
            and not _within(site, p["allowed"])
        )
    if kind == RuleKind.TRANSFER:
        return (
            r.action == Action.TRANSFER_ASSET
            and _matches(p, _present(r.asset, "asset"))
            and not _within(site, p["allowed"])
            and not (r.legal_bases & set(p["legal_bases"]))
        )
    if kind == RuleKind.ACCREDITATION:
        if r.action not in (Action.PLACE_ASSET, Action.PROCESS_ASSET, Action.REPLICATE_ASSET):
            return False
        a = _present(r.asset, "asset")
        if rank(CLASSIFICATIONS, a.classification) < rank(CLASSIFICATIONS, p["min_classification"]):
            return False
        accredited = set(p["accreditations"]) <= site.accreditations
        return not (accredited and (site.air_gapped or not p["air_gapped"]))
    if kind == RuleKind.PERSONNEL:
        if r.action != Action.ACCESS_SITE:
            return False
        if site.air_gapped and r.remote:
            return True
        person = _present(r.principal, "person")
        if (p["nationalities"] or p["residencies"]) and not (
            person.nationality in p["nationalities"] or person.residency in p["residencies"]
        ):
            return True
        if rank(CLEARANCES, person.clearance) < rank(CLEARANCES, p["min_clearance"]):
            return True
        return p["in_country"] and r.from_country != site.country
    if kind == RuleKind.CUSTOMER_APPROVAL:
        return r.action == Action.ACCESS_SITE and not r.approved
    if kind == RuleKind.TELEMETRY_EGRESS:
        if r.action != Action.EGRESS_TELEMETRY:
            return False
        ok_category = not p["categories"] or r.telemetry_category in p["categories"]
        ok_destination = not p["destinations"] or _within(
            _present(r.destination, "telemetry destination"), p["destinations"]
        )
        return not (ok_category and ok_destination)
    if kind == RuleKind.ARTIFACT_PROVENANCE:
        if r.action != Action.ACCEPT_ARTIFACT:
            return False
        artifact = _present(r.artifact, "artifact")
        ok = (
            artifact.origin in p["origins"]
            and (artifact.signature_valid or not p["require_signature"])
            and (not p.get("trust_roots") or bool(artifact.roots & set(p["trust_roots"])))
        )
        return not ok
    if kind == RuleKind.KEY_CUSTODY:
        if r.action != Action.PLACE_ASSET:
            return False
        named = set(p["stores"])
        if named & r.key_stores_disconnected:  # the customer pulled the keys: nothing new there
            return True
        if _present(r.asset, "asset").kind != "key":
            return False
        if p["in_country"] and r.key_store_country != site.country:
            return True
        if named and not named & r.key_stores:
            return True
        return p["customer_controlled"] and not r.key_store_customer_controlled
    raise AssertionError(kind)


def platform_permits(r: Request) -> list[str]:
    if r.action in ASSET_ACTIONS:
        asset = _present(r.asset, "asset")
        return ["platform.own-premises"] if asset.tenant == r.site.tenant else []
    return {
        Action.ACCESS_SITE: ["platform.provider-access"],
        Action.ACCEPT_ARTIFACT: ["platform.artifacts"],
        Action.EGRESS_TELEMETRY: ["platform.telemetry"],
    }[Action(r.action)]


def evaluate(rules: list[Rule], r: Request) -> Decision:
    missing = missing_facts(r)
    if missing:
        return Decision(False, (), tuple(f"denied: {m}" for m in missing), tuple(missing))
    denied = sorted({rule.id for rule in rules if forbids(rule, r)})
    if denied:
        return Decision(False, tuple(denied), ())
    permits = platform_permits(r)
    return Decision(bool(permits), tuple(sorted(permits)), ())
