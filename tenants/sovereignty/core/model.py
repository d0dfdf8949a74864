"""Facts, requests, rules and decisions: plain values shared by the Cedar engine and the
reference evaluator."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

CLASSIFICATIONS = ("public", "internal", "confidential", "restricted", "secret")
CLEARANCES = ("none", "restricted", "confidential", "secret", "top-secret")
ASSET_KINDS = ("dataset", "model", "backup", "replica", "key")
LEGAL_BASES = ("adequacy", "scc", "bcr")


class Action(StrEnum):
    PLACE_ASSET = "place_asset"  # store an asset at a site
    PROCESS_ASSET = "process_asset"  # run a workload that reads the asset at a site
    REPLICATE_ASSET = "replicate_asset"  # keep a replica or backup at a site
    TRANSFER_ASSET = "transfer_asset"  # move it across a border
    ACCESS_SITE = "access_site"  # provider personnel acting on a site
    ACCEPT_ARTIFACT = "accept_artifact"  # firmware/software accepted for a site
    EGRESS_TELEMETRY = "egress_telemetry"  # telemetry leaving a site


class RuleKind(StrEnum):
    RESIDENCY = "residency"
    COLOCATION = "colocation"
    REPLICA_RESIDENCY = "replica_residency"
    TRANSFER = "transfer"
    ACCREDITATION = "accreditation"
    PERSONNEL = "personnel"
    CUSTOMER_APPROVAL = "customer_approval"
    TELEMETRY_EGRESS = "telemetry_egress"
    ARTIFACT_PROVENANCE = "artifact_provenance"
    KEY_CUSTODY = "key_custody"


def rank(scale: tuple[str, ...], value: str) -> int:
    return scale.index(value)


@dataclass(frozen=True)
class SiteFacts:
    id: str
    tenant: str
    country: str  # ISO 3166-1 alpha-2
    jurisdictions: frozenset[str]  # the country plus every group containing it ("EU", "EEA", …)
    air_gapped: bool = False
    accreditations: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AssetFacts:
    id: str
    tenant: str
    kind: str
    classification: str
    labels: frozenset[str] = frozenset()
    site: str | None = None  # where it is now


@dataclass(frozen=True)
class PersonFacts:
    id: str
    nationality: str
    residency: str
    clearance: str


#: In an artifact's ``roots``: one of the tenant's own roots verified it. A provenance rule that
#: trusts "any root" pins the provider's roots in force at its activation and this: the tenant's
#: own keys are its own boundary and count at once, a provider key registered later does not.
OWN_ROOTS = "tenant:_own"  # no root has it: a root's name starts with a letter or digit


@dataclass(frozen=True)
class ArtifactFacts:
    """Verified, not claimed: ``signature_valid`` and ``roots`` are what the service found when
    it checked the release's signature against the trust roots in scope (``roots``: the refs of
    every unrevoked root whose key verifies it, and ``OWN_ROOTS`` when one of them is the
    tenant's own)."""

    id: str
    origin: str
    signature_valid: bool
    roots: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Request:
    """One question. ``site`` is where the action happens (target of a placement, the site a
    technician enters, the site telemetry leaves)."""

    action: Action
    principal: PersonFacts | None
    site: SiteFacts
    asset: AssetFacts | None = None
    artifact: ArtifactFacts | None = None
    legal_bases: frozenset[str] = frozenset()  # transfers: bases on record for the destination
    from_country: str = ""  # for access: where the person acts from
    remote: bool = False
    approved: bool = False  # a tenant-admin-approved access request covers now
    telemetry_category: str = ""
    destination: SiteFacts | None = None  # telemetry egress destination
    key_store_country: str = ""
    key_store_customer_controlled: bool = False
    # Placements: the asset's tenant's external key stores serving the site, connected or
    # disconnected by the customer (a key-custody rule naming one denies while it is down).
    key_stores: frozenset[str] = frozenset()
    key_stores_disconnected: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Rule:
    """A structured rule: ``params`` are validated per kind by ``rules.validate``."""

    id: str  # stable id, e.g. "rule-12.v3"
    tenant: str
    kind: RuleKind
    params: dict = field(default_factory=dict, hash=False, compare=False)
    description: str = ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule_ids: tuple[str, ...]  # the rules that decided it (forbids on deny, permits on allow)
    reasons: tuple[str, ...]  # one human sentence per deciding rule, or why it failed closed
    errors: tuple[str, ...] = ()  # non-empty: failed closed
