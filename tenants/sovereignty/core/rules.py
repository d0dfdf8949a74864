"""Structured rule parameters: validated per kind, described in plain language.

Values that reach Cedar text (countries, groups, labels, origins, categories) are restricted to a
safe alphabet here, so compiled policies never need escaping.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tenants.sovereignty.core.model import (
    ASSET_KINDS,
    CLASSIFICATIONS,
    CLEARANCES,
    LEGAL_BASES,
    RuleKind,
)

_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")
MATCH_KEYS = {"asset_kinds", "min_classification", "labels"}
SCHEMA: dict[RuleKind, dict[str, str]] = {
    # key -> type: tokens (list of safe strings), kinds, classification, clearance, bool,
    # legal_bases; keys ending in "!" are required and non-empty.
    RuleKind.RESIDENCY: {
        "asset_kinds": "kinds",
        "min_classification": "classification",
        "labels": "tokens",
        "allowed!": "tokens",
    },
    RuleKind.COLOCATION: {
        "asset_kinds": "kinds",
        "min_classification": "classification",
        "labels": "tokens",
    },
    RuleKind.REPLICA_RESIDENCY: {
        "asset_kinds": "kinds",
        "min_classification": "classification",
        "labels": "tokens",
        "allowed!": "tokens",
    },
    RuleKind.TRANSFER: {
        "asset_kinds": "kinds",
        "min_classification": "classification",
        "labels": "tokens",
        "allowed!": "tokens",
        "legal_bases": "legal_bases",
    },
    RuleKind.ACCREDITATION: {
        "min_classification!": "classification",
        "accreditations": "tokens",
        "air_gapped": "bool",
    },
    RuleKind.PERSONNEL: {
        "nationalities": "tokens",
        "residencies": "tokens",
        "min_clearance": "clearance",
        "in_country": "bool",
    },
    RuleKind.CUSTOMER_APPROVAL: {},
    RuleKind.TELEMETRY_EGRESS: {"categories": "tokens", "destinations": "tokens"},
    RuleKind.ARTIFACT_PROVENANCE: {
        "origins!": "tokens",
        "require_signature": "bool",
        "trust_roots": "tokens",  # refs (provider:<name>, tenant:<name>) one must have signed
    },
    RuleKind.KEY_CUSTODY: {
        "in_country": "bool",
        "customer_controlled": "bool",
        "stores": "tokens",  # customer-held external key stores, by name (models/keys.py)
    },
}


#: The parameters of each kind whose values are places: an ISO 3166-1 alpha-2 country code or
#: the code of a jurisdiction group (built-in or the tenant's own).
PLACE_KEYS: dict[RuleKind, tuple[str, ...]] = {
    RuleKind.RESIDENCY: ("allowed",),
    RuleKind.REPLICA_RESIDENCY: ("allowed",),
    RuleKind.TRANSFER: ("allowed",),
    RuleKind.PERSONNEL: ("nationalities", "residencies"),
    RuleKind.TELEMETRY_EGRESS: ("destinations",),
}
#: What a place no longer known becomes when groups are expanded: a value no fact ever has, so
#: an allow-list naming it admits nothing through it (fail closed).
UNRESOLVED = "unresolved:"


@dataclass(frozen=True)
class Places:
    """The places a rule may name: the country codes and the group codes known to the caller
    (the pure core has no country list of its own)."""

    countries: Collection[str]
    groups: Collection[str]


class RuleError(ValueError):
    """A rule that cannot be saved: ``field`` names the parameter at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class UnknownPlace(RuleError):
    """A place value that is neither a country code nor a known group (``field`` names the
    parameter, ``value`` the value)."""

    def __init__(self, field: str, value: str):
        super().__init__(
            field,
            f"{value!r} is neither an ISO 3166-1 alpha-2 country code nor a known "
            "jurisdiction group",
        )
        self.value = value


def validate_params(
    kind: str, params: dict[str, Any], places: Places | None = None
) -> dict[str, Any]:
    """Return the params normalised (defaults filled, lists sorted), or raise RuleError. With
    ``places``, every place value must be one of its countries or groups: a mistyped "XX" or
    "Germany" would otherwise be accepted and then deny everything."""
    try:
        kind = RuleKind(kind)
    except ValueError:
        raise RuleError("kind", f"unknown rule kind {kind!r}") from None
    if not isinstance(params, dict):
        raise RuleError("params", "must be an object")
    spec = SCHEMA[kind]
    known = {key.rstrip("!") for key in spec}
    unknown = set(params) - known
    if unknown:
        raise RuleError(f"params.{sorted(unknown)[0]}", f"not a parameter of a {kind} rule")
    out: dict[str, Any] = {}
    for key, typ in spec.items():
        name, required = key.rstrip("!"), key.endswith("!")
        value = params.get(name)
        out[name] = _check(name, typ, value, required)
    if places is not None:
        for name in PLACE_KEYS.get(kind, ()):
            for value in out[name]:
                if value not in places.countries and value not in places.groups:
                    raise UnknownPlace(f"params.{name}", value)
    if kind == RuleKind.PERSONNEL and not (
        out["nationalities"]
        or out["residencies"]
        or out["min_clearance"] != "none"
        or out["in_country"]
    ):
        raise RuleError("params", "a personnel rule must restrict something")
    if kind == RuleKind.ACCREDITATION and not (out["accreditations"] or out["air_gapped"]):
        raise RuleError("params", "name the accreditations required, or air_gapped")
    if kind == RuleKind.TELEMETRY_EGRESS and not (out["categories"] or out["destinations"]):
        raise RuleError("params", "name the categories or destinations that may leave")
    return out


def place_groups(kind: str, params: dict[str, Any], countries: Collection[str]) -> set[str]:
    """The values of the rule's place parameters that are not country codes (group codes)."""
    keys = PLACE_KEYS.get(RuleKind(kind), ())
    return {
        v
        for key in keys
        for v in params.get(key) or []
        if isinstance(v, str) and v not in countries
    }


def expand_places(
    kind: str,
    params: dict[str, Any],
    countries: Collection[str],
    groups: Mapping[str, Sequence[str]],
) -> dict[str, Any]:
    """The params with every group named in a place parameter replaced by its countries, so a
    decision compares countries only and a group means exactly the version given here (a rule's
    pinned versions). A value that is neither a country nor in ``groups`` becomes a value no
    fact has (``UNRESOLVED``): it admits nothing, it never falls back to a group's current
    definition."""
    keys = PLACE_KEYS.get(RuleKind(kind), ())
    out = dict(params)
    for key in keys:
        values = params.get(key)
        if not isinstance(values, list):
            continue
        expanded: set[str] = set()
        for v in values:
            if v in countries:
                expanded.add(v)
            elif v in groups:
                expanded.update(groups[v])
            else:
                expanded.add(f"{UNRESOLVED}{v}")
        out[key] = sorted(expanded)
    return out


def pins_roots(kind: str, params: Mapping[str, Any]) -> bool:
    """Whether the rule trusts "any root" for its origins: an artifact_provenance rule that
    requires a signature and names no ``trust_roots``. Such a rule pins the roots in force when
    it is activated, so a root registered later (a provider's key, say) does not widen it."""
    return (
        kind == RuleKind.ARTIFACT_PROVENANCE
        and bool(params.get("require_signature"))
        and not params.get("trust_roots")
    )


def pin_roots(kind: str, params: dict[str, Any], roots: Collection[str]) -> dict[str, Any]:
    """The params of a rule that ``pins_roots`` with ``trust_roots`` set to the pinned refs; with
    none pinned, a ref no root has (``UNRESOLVED``): it admits no signature, never any root.
    Other rules are returned as they are."""
    if not pins_roots(kind, params):
        return params
    return {**params, "trust_roots": sorted(roots) or [f"{UNRESOLVED}trust_roots"]}


def _check(name: str, typ: str, value: Any, required: bool) -> Any:
    field = f"params.{name}"
    if typ in {"tokens", "kinds", "legal_bases"}:
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RuleError(field, "must be a list of strings")
        if required and not value:
            raise RuleError(field, "must not be empty")
        allowed = {"kinds": ASSET_KINDS, "legal_bases": LEGAL_BASES}.get(typ)
        for v in value:
            if allowed and v not in allowed:
                raise RuleError(field, f"{v!r} is not one of {', '.join(allowed)}")
            if not _TOKEN.match(v):
                raise RuleError(field, f"{v!r} is not a valid code")
        return sorted(set(value))
    if typ in {"classification", "clearance"}:
        scale = CLASSIFICATIONS if typ == "classification" else CLEARANCES
        if value is None:
            if required:
                raise RuleError(field, "is required")
            return scale[0]
        if value not in scale:
            raise RuleError(field, f"{value!r} is not one of {', '.join(scale)}")
        return value
    if typ == "bool":
        if value is None:
            return False
        if not isinstance(value, bool):
            raise RuleError(field, "must be true or false")
        return value
    raise AssertionError(typ)


def _assets(p: dict[str, Any]) -> str:
    kinds = " or ".join(p["asset_kinds"]) + " assets" if p.get("asset_kinds") else "assets"
    bits = [kinds]
    if p.get("min_classification", "public") != "public":
        bits.append(f"classified {p['min_classification']} or above")
    if p.get("labels"):
        bits.append(f"labelled {' or '.join(p['labels'])}")
    return " ".join(bits)


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def describe(kind: str, p: dict[str, Any]) -> str:
    """The rule in one plain sentence, as customers read it."""
    kind = RuleKind(kind)
    where = ", ".join(p.get("allowed", []))
    if kind == RuleKind.RESIDENCY:
        return _first_upper(f"{_assets(p)} may only be stored or processed in {where}")
    if kind == RuleKind.COLOCATION:
        return _first_upper(f"{_assets(p)} may only be processed at the site where they are stored")
    if kind == RuleKind.REPLICA_RESIDENCY:
        return f"Replicas and backups of {_assets(p)} may only be kept in {where}"
    if kind == RuleKind.TRANSFER:
        bases = ", ".join(p["legal_bases"]) or "none"
        return _first_upper(
            f"{_assets(p)} may not be transferred outside {where} unless a "
            f"legal basis ({bases}) is on record"
        )
    if kind == RuleKind.ACCREDITATION:
        needs = list(p["accreditations"]) + (["air-gapped"] if p["air_gapped"] else [])
        return (
            f"Assets classified {p['min_classification']} or above only on sites that are "
            f"{' and '.join(needs) or 'accredited'}"
        )
    if kind == RuleKind.PERSONNEL:
        parts = []
        if p["nationalities"] or p["residencies"]:
            origin = []
            if p["nationalities"]:
                origin.append("nationality in " + ", ".join(p["nationalities"]))
            if p["residencies"]:
                origin.append("residency in " + ", ".join(p["residencies"]))
            parts.append(" or ".join(origin))
        if p["min_clearance"] != "none":
            parts.append(f"clearance {p['min_clearance']} or above")
        if p["in_country"]:
            parts.append("acting from within the site's country")
        return (
            "Provider personnel on a site need "
            + "; ".join(parts)
            + "; no remote access to air-gapped sites"
        )
    if kind == RuleKind.CUSTOMER_APPROVAL:
        return "Provider access to a site needs an access request approved by a tenant admin"
    if kind == RuleKind.TELEMETRY_EGRESS:
        cats = ", ".join(p["categories"]) or "any category"
        dest = ", ".join(p["destinations"]) or "anywhere"
        return f"Only telemetry of {cats} may leave a site, and only to {dest}"
    if kind == RuleKind.ARTIFACT_PROVENANCE:
        signed = ", signed" if p["require_signature"] else ""
        if p.get("trust_roots"):
            signed = f", signed by {' or '.join(p['trust_roots'])}"
        return f"Firmware and software only from {', '.join(p['origins'])}{signed}"
    if kind == RuleKind.KEY_CUSTODY:
        parts = (["in-country"] if p["in_country"] else []) + (
            ["customer-controlled"] if p["customer_controlled"] else []
        )
        if p.get("stores"):
            kept = f" ({', '.join(parts)})" if parts else ""
            return (
                f"Keys only in the customer-held key stores {', '.join(p['stores'])}{kept}; "
                "nothing is placed at a site they serve while one is disconnected"
            )
        return f"Keys only in {' and '.join(parts) or 'approved'} key stores"
    raise AssertionError(kind)
