"""Rules → Cedar policies, and evaluation with cedarpy that fails closed.

Platform permits open each action (assets only on their own tenant's premises); every customer
rule is a ``forbid``. Forbid wins, and no permit means deny. Any evaluation error, entity that
does not fit the schema, or missing fact is a deny that says why: Cedar itself skips a policy
that errors, which for a forbid would fail open.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cedarpy

from tenants.sovereignty.core.model import (
    CLASSIFICATIONS,
    CLEARANCES,
    Action,
    Decision,
    Request,
    Rule,
    RuleKind,
    SiteFacts,
    rank,
)
from tenants.sovereignty.core.rules import describe, validate_params


def _record(**attributes: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Record", "attributes": attributes}


_STR, _LONG, _BOOL = {"type": "String"}, {"type": "Long"}, {"type": "Boolean"}
_STRS = {"type": "Set", "element": _STR}
_SITE = {"type": "Entity", "name": "Site"}


def _applies(resource: str, context: dict[str, Any]) -> dict[str, Any]:
    return {
        "appliesTo": {"principalTypes": ["Person"], "resourceTypes": [resource], "context": context}
    }


# The schema in Cedar's JSON schema format, written once: the engine validates and evaluates
# against it, and an evidence pack carries it as it is (what Amazon Verified Permissions'
# PutSchema takes, beside the policies).
SCHEMA_JSON: dict[str, Any] = {
    "": {
        "commonTypes": {
            "AssetContext": _record(
                site=_SITE,
                legal_bases=_STRS,
                key_store_country=_STR,
                key_store_customer_controlled=_BOOL,
                key_stores=_STRS,
                key_stores_disconnected=_STRS,
            )
        },
        "entityTypes": {
            "Site": {
                "shape": _record(
                    key=_STR,
                    tenant=_STR,
                    country=_STR,
                    jurisdictions=_STRS,
                    air_gapped=_BOOL,
                    accreditations=_STRS,
                )
            },
            "Asset": {
                "shape": _record(
                    tenant=_STR, kind=_STR, classification=_LONG, labels=_STRS, site=_STR
                )
            },
            "Person": {"shape": _record(nationality=_STR, residency=_STR, clearance=_LONG)},
            "Artifact": {"shape": _record(origin=_STR, signature_valid=_BOOL, roots=_STRS)},
        },
        "actions": {
            **{
                name: _applies("Asset", {"type": "AssetContext"})
                for name in ("place_asset", "process_asset", "replicate_asset", "transfer_asset")
            },
            "access_site": _applies(
                "Site", _record(from_country=_STR, remote=_BOOL, approved=_BOOL)
            ),
            "accept_artifact": _applies("Artifact", _record(site=_SITE)),
            "egress_telemetry": _applies("Site", _record(category=_STR, destination=_SITE)),
        },
    }
}
SCHEMA_JSON_TEXT = json.dumps(SCHEMA_JSON, indent=2, sort_keys=True) + "\n"
SCHEMA = cedarpy.Schema.from_json_str(SCHEMA_JSON_TEXT)
ASSET_ACTIONS = (
    Action.PLACE_ASSET,
    Action.PROCESS_ASSET,
    Action.REPLICATE_ASSET,
    Action.TRANSFER_ASSET,
)

_ASSET_ACTION_LIST = "[" + ", ".join(f'Action::"{a}"' for a in ASSET_ACTIONS) + "]"
PLATFORM_POLICIES: list[tuple[str, str, str]] = [
    (
        "platform.own-premises",
        "An asset may be placed, processed, replicated or moved on its own tenant's sites",
        f"permit(principal, action in {_ASSET_ACTION_LIST}, resource) "
        "when { resource.tenant == context.site.tenant };",
    ),
    (
        "platform.provider-access",
        "Provider personnel may act on sites the provider runs",
        'permit(principal, action == Action::"access_site", resource);',
    ),
    (
        "platform.artifacts",
        "Firmware and software may be delivered to sites",
        'permit(principal, action == Action::"accept_artifact", resource);',
    ),
    (
        "platform.telemetry",
        "Telemetry may be sent to the control plane",
        'permit(principal, action == Action::"egress_telemetry", resource);',
    ),
]


def _list(values: Iterable[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def _actions(*actions: Action) -> str:
    return "[" + ", ".join(f'Action::"{a}"' for a in actions) + "]"


def _asset_match(p: dict[str, Any]) -> str:
    terms = []
    if p.get("asset_kinds"):
        terms.append(f"{_list(p['asset_kinds'])}.contains(resource.kind)")
    if p.get("min_classification", "public") != "public":
        terms.append(f"resource.classification >= {rank(CLASSIFICATIONS, p['min_classification'])}")
    if p.get("labels"):
        terms.append(f"resource.labels.containsAny({_list(p['labels'])})")
    return " && ".join(terms) or "true"


def _forbid(actions: str, when: str, unless: str | None = None) -> str:
    text = f"forbid(principal, action in {actions}, resource) when {{ {when} }}"
    if unless:
        text += f" unless {{ {unless} }}"
    return text + ";"


def rule_policies(rule: Rule) -> list[str]:
    """The Cedar ``forbid`` policies of one rule (some kinds need more than one)."""
    p = validate_params(rule.kind, rule.params)
    kind = RuleKind(rule.kind)
    site_in = "context.site.jurisdictions.containsAny({})"
    if kind == RuleKind.RESIDENCY:
        return [
            _forbid(
                _actions(Action.PLACE_ASSET, Action.PROCESS_ASSET),
                _asset_match(p),
                site_in.format(_list(p["allowed"])),
            )
        ]
    if kind == RuleKind.COLOCATION:
        return [
            _forbid(
                _actions(Action.PROCESS_ASSET),
                f"{_asset_match(p)} && resource.site != context.site.key",
            )
        ]
    if kind == RuleKind.REPLICA_RESIDENCY:
        return [
            _forbid(
                _actions(Action.REPLICATE_ASSET),
                _asset_match(p),
                site_in.format(_list(p["allowed"])),
            )
        ]
    if kind == RuleKind.TRANSFER:
        unless = site_in.format(_list(p["allowed"]))
        if p["legal_bases"]:
            unless += f" || context.legal_bases.containsAny({_list(p['legal_bases'])})"
        return [_forbid(_actions(Action.TRANSFER_ASSET), _asset_match(p), unless)]
    if kind == RuleKind.ACCREDITATION:
        needs = []
        if p["accreditations"]:
            needs.append(f"context.site.accreditations.containsAll({_list(p['accreditations'])})")
        if p["air_gapped"]:
            needs.append("context.site.air_gapped")
        actions = _actions(Action.PLACE_ASSET, Action.PROCESS_ASSET, Action.REPLICATE_ASSET)
        return [
            _forbid(
                actions,
                _asset_match({"min_classification": p["min_classification"]}),
                " && ".join(needs),
            )
        ]
    if kind == RuleKind.PERSONNEL:
        access = _actions(Action.ACCESS_SITE)
        out = [_forbid(access, "resource.air_gapped && context.remote")]
        origin = []
        if p["nationalities"]:
            origin.append(f"{_list(p['nationalities'])}.contains(principal.nationality)")
        if p["residencies"]:
            origin.append(f"{_list(p['residencies'])}.contains(principal.residency)")
        if origin:
            out.append(_forbid(access, "true", " || ".join(origin)))
        if p["min_clearance"] != "none":
            out.append(
                _forbid(access, f"principal.clearance < {rank(CLEARANCES, p['min_clearance'])}")
            )
        if p["in_country"]:
            out.append(_forbid(access, "context.from_country != resource.country"))
        return out
    if kind == RuleKind.CUSTOMER_APPROVAL:
        return [_forbid(_actions(Action.ACCESS_SITE), "true", "context.approved")]
    if kind == RuleKind.TELEMETRY_EGRESS:
        terms = []
        if p["categories"]:
            terms.append(f"{_list(p['categories'])}.contains(context.category)")
        if p["destinations"]:
            terms.append(
                f"context.destination.jurisdictions.containsAny({_list(p['destinations'])})"
            )
        return [_forbid(_actions(Action.EGRESS_TELEMETRY), "true", " && ".join(terms))]
    if kind == RuleKind.ARTIFACT_PROVENANCE:
        unless = f"{_list(p['origins'])}.contains(resource.origin)"
        if p["require_signature"]:
            unless += " && resource.signature_valid"
        if p.get("trust_roots"):
            unless += f" && resource.roots.containsAny({_list(p['trust_roots'])})"
        return [_forbid(_actions(Action.ACCEPT_ARTIFACT), "true", unless)]
    if kind == RuleKind.KEY_CUSTODY:
        needs = []
        if p["in_country"]:
            needs.append("context.key_store_country == context.site.country")
        if p["customer_controlled"]:
            needs.append("context.key_store_customer_controlled")
        out = []
        if p["stores"]:  # keys only in the named customer-held stores; none placed while down
            stores = _list(p["stores"])
            needs.append(f"context.key_stores.containsAny({stores})")
            out.append(
                _forbid(
                    _actions(Action.PLACE_ASSET),
                    f"context.key_stores_disconnected.containsAny({stores})",
                )
            )
        if needs:
            out.append(
                _forbid(_actions(Action.PLACE_ASSET), 'resource.kind == "key"', " && ".join(needs))
            )
        return out
    raise AssertionError(kind)


Deciders = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class CompiledPolicies:
    """A tenant's active rules as one Cedar policy set, parsed once and reused; and the same
    policies sliced by action, so a decision evaluates only the policies that can apply to it
    (an access check does not wade through residency rules)."""

    text: str
    policy_set: cedarpy.PolicySet
    deciders: Deciders  # policy index -> (rule id, sentence)
    slices: dict[str, tuple[cedarpy.PolicySet, Deciders]] | None = None  # action -> slice


def compile_rules(rules: list[Rule]) -> CompiledPolicies:
    chunks: list[str] = []
    deciders: list[tuple[str, str]] = []
    for rule_id, sentence, policy in PLATFORM_POLICIES:
        chunks.append(f"@id({json.dumps(rule_id)})\n{policy}")
        deciders.append((rule_id, sentence))
    for rule in rules:
        sentence = rule.description or describe(rule.kind, validate_params(rule.kind, rule.params))
        for policy in rule_policies(rule):
            chunks.append(f"@id({json.dumps(rule.id)})\n{policy}")
            deciders.append((rule.id, sentence))
    text = "\n\n".join(chunks)
    slices: dict[str, tuple[cedarpy.PolicySet, Deciders]] = {}
    for action in Action:
        picked = [i for i, chunk in enumerate(chunks) if action.value in _scope_actions(chunk)]
        slice_text = "\n\n".join(chunks[i] for i in picked)
        slices[action.value] = (
            cedarpy.PolicySet.from_str(slice_text),
            tuple(deciders[i] for i in picked),
        )
    return CompiledPolicies(text, cedarpy.PolicySet.from_str(text), tuple(deciders), slices)


_SCOPE = re.compile(r"(?:permit|forbid)\s*\(\s*principal\s*,\s*action([^)]*?),\s*resource")


def _scope_actions(policy: str) -> set[str]:
    """The actions a generated policy's scope names (every policy here names its actions)."""
    scope = _SCOPE.search(policy)
    if scope is None or "Action::" not in scope.group(1):
        return {a.value for a in Action}  # an unscoped policy applies to every action
    return set(re.findall(r'Action::"(\w+)"', scope.group(1)))


def validation_errors(rules: list[Rule]) -> list[str]:
    """Cedar's type check of the compiled rules against the schema (empty: valid)."""
    compiled = compile_rules(rules)
    result = cedarpy.validate_policies(compiled.text, SCHEMA)
    if result.validation_passed:
        return []
    return [str(e) for e in getattr(result, "errors", [])] or ["policy validation failed"]


# --- Entities: only what the decision needs ---------------------------------------------------


def _uid(kind: str, key: str) -> dict[str, str]:
    return {"type": kind, "id": key}


def _site(site: SiteFacts) -> dict[str, Any]:
    return {
        "uid": _uid("Site", site.id),
        "parents": [],
        "attrs": {
            "key": site.id,
            "tenant": site.tenant,
            "country": site.country,
            "jurisdictions": sorted(site.jurisdictions),
            "air_gapped": site.air_gapped,
            "accreditations": sorted(site.accreditations),
        },
    }


def missing_facts(request: Request) -> list[str]:
    """Facts a decision cannot do without: their absence is a deny, never a guess."""
    missing = []
    if not request.site.country:
        missing.append(f"site {request.site.id} has no country")
    if request.destination is not None and not request.destination.country:
        missing.append(f"destination {request.destination.id} has no country")
    if request.action in ASSET_ACTIONS:
        if request.asset is None:
            missing.append("no asset named")
        elif request.asset.classification not in CLASSIFICATIONS:
            missing.append(f"asset {request.asset.id} has no valid classification")
    if request.action == Action.ACCESS_SITE:
        person = request.principal
        if person is None:
            missing.append("no person named")
        else:
            if not person.nationality:
                missing.append(f"person {person.id} has no nationality on record")
            if not person.residency:
                missing.append(f"person {person.id} has no residency on record")
            if person.clearance not in CLEARANCES:
                missing.append(f"person {person.id} has no valid clearance on record")
    if request.action == Action.ACCEPT_ARTIFACT and request.artifact is None:
        missing.append("no artifact named")
    if request.action == Action.EGRESS_TELEMETRY and request.destination is None:
        missing.append("no telemetry destination named")
    return missing


def cedar_request(request: Request) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Cedar request and the entities it needs. ``request`` has the facts its action needs
    (``missing_facts`` is empty)."""
    person = request.principal
    principal_key = person.id if person else "system"
    entities: list[dict[str, Any]] = [
        {
            "uid": _uid("Person", principal_key),
            "parents": [],
            "attrs": {
                "nationality": person.nationality if person else "",
                "residency": person.residency if person else "",
                "clearance": rank(CLEARANCES, person.clearance)
                if person and person.clearance in CLEARANCES
                else 0,
            },
        },
        _site(request.site),
    ]
    site_ref = {"__entity": _uid("Site", request.site.id)}
    action = Action(request.action)
    context: dict[str, Any]
    if action in ASSET_ACTIONS:
        asset = request.asset
        assert asset is not None, "missing_facts: no asset named"
        entities.append(
            {
                "uid": _uid("Asset", asset.id),
                "parents": [],
                "attrs": {
                    "tenant": asset.tenant,
                    "kind": asset.kind,
                    "classification": rank(CLASSIFICATIONS, asset.classification),
                    "labels": sorted(asset.labels),
                    "site": asset.site or "",
                },
            }
        )
        resource = _uid("Asset", asset.id)
        context = {
            "site": site_ref,
            "legal_bases": sorted(request.legal_bases),
            "key_store_country": request.key_store_country,
            "key_store_customer_controlled": request.key_store_customer_controlled,
            "key_stores": sorted(request.key_stores),
            "key_stores_disconnected": sorted(request.key_stores_disconnected),
        }
    elif action == Action.ACCESS_SITE:
        resource = _uid("Site", request.site.id)
        context = {
            "from_country": request.from_country,
            "remote": request.remote,
            "approved": request.approved,
        }
    elif action == Action.ACCEPT_ARTIFACT:
        artifact = request.artifact
        assert artifact is not None, "missing_facts: no artifact named"
        entities.append(
            {
                "uid": _uid("Artifact", artifact.id),
                "parents": [],
                "attrs": {
                    "origin": artifact.origin,
                    "signature_valid": artifact.signature_valid,
                    "roots": sorted(artifact.roots),
                },
            }
        )
        resource = _uid("Artifact", artifact.id)
        context = {"site": site_ref}
    else:
        destination = request.destination
        assert destination is not None, "missing_facts: no telemetry destination named"
        if destination.id != request.site.id:
            entities.append(_site(destination))
        resource = _uid("Site", request.site.id)
        context = {
            "category": request.telemetry_category,
            "destination": {"__entity": _uid("Site", destination.id)},
        }
    cedar = {
        "principal": _uid("Person", principal_key),
        "action": _uid("Action", action.value),
        "resource": resource,
        "context": context,
    }
    return cedar, entities


def _slice(compiled: CompiledPolicies, action: str) -> tuple[cedarpy.PolicySet, Deciders]:
    if compiled.slices is not None:
        return compiled.slices[Action(action).value]
    return compiled.policy_set, compiled.deciders


def _missing(missing: list[str]) -> Decision:
    return Decision(False, (), tuple(f"denied: {m}" for m in missing), tuple(missing))


def _failed(exc: Exception) -> Decision:
    return Decision(False, (), (f"denied: evaluation failed ({exc})",), (str(exc),))


def _decision(result: cedarpy.AuthzResult, deciders: Deciders) -> Decision:
    """Cedar's answer as a decision naming its rules; any error in it is a deny."""
    errors = tuple(str(e) for e in result.diagnostics.errors)
    if errors:
        return Decision(False, (), tuple(f"denied: {e}" for e in errors), errors)
    decided_by: dict[str, str] = {}
    for reason in result.diagnostics.reasons:
        rule_id, sentence = deciders[int(reason.removeprefix("policy"))]
        decided_by.setdefault(rule_id, sentence)
    allowed = result.decision == cedarpy.Decision.Allow
    if not allowed and not decided_by:
        return Decision(False, (), ("denied: no rule permits this (default deny)",))
    ids = tuple(sorted(decided_by))
    return Decision(allowed, ids, tuple(decided_by[i] for i in ids))


def evaluate(compiled: CompiledPolicies, request: Request) -> Decision:
    missing = missing_facts(request)
    if missing:
        return _missing(missing)
    try:
        cedar, entities = cedar_request(request)
        policy_set, deciders = _slice(compiled, request.action)
        result = cedarpy.is_authorized(cedar, policy_set, entities, SCHEMA)
        return _decision(result, deciders)
    except Exception as exc:  # anything unexpected fails closed
        return _failed(exc)


def evaluate_many(compiled: CompiledPolicies, requests: list[Request]) -> list[Decision]:
    """``evaluate`` of each request, in order, with one Cedar call per action slice (and per set
    of requests whose entities agree: two different facts under one entity id never share a
    call). Cedar refuses a batch as a whole when one entity is off the schema: a request of a
    batch that errs is decided again alone, so that one bad request denies only itself."""
    out: list[Decision | None] = [None] * len(requests)
    # action -> batches, each (entities by uid, [(index, cedar request)])
    batches: dict[str, list[tuple[dict[tuple[str, str], dict[str, Any]], list[tuple[int, Any]]]]]
    batches = {}
    for index, request in enumerate(requests):
        missing = missing_facts(request)
        if missing:
            out[index] = _missing(missing)
            continue
        try:
            cedar, entities = cedar_request(request)
            Action(request.action)
        except Exception as exc:  # fails closed, like evaluate
            out[index] = _failed(exc)
            continue
        keyed = {(e["uid"]["type"], e["uid"]["id"]): e for e in entities}
        for known, members in batches.setdefault(request.action, []):
            if all(known.get(uid, entity) == entity for uid, entity in keyed.items()):
                known.update(keyed)
                members.append((index, cedar))
                break
        else:
            batches[request.action].append((keyed, [(index, cedar)]))
    for action, groups in batches.items():
        policy_set, deciders = _slice(compiled, action)
        for known, members in groups:
            try:
                results = cedarpy.is_authorized_batch(
                    [cedar for _, cedar in members], policy_set, list(known.values()), SCHEMA
                )
            except Exception:  # isolate the request that made Cedar refuse the batch
                for index, _ in members:
                    out[index] = evaluate(compiled, requests[index])
                continue
            for (index, _), result in zip(members, results, strict=True):
                if len(members) > 1 and result.diagnostics.errors:
                    out[index] = evaluate(compiled, requests[index])  # its own error, or another's
                    continue
                try:
                    out[index] = _decision(result, deciders)
                except Exception as exc:
                    out[index] = _failed(exc)
    decisions = [d for d in out if d is not None]
    assert len(decisions) == len(requests)
    return decisions
